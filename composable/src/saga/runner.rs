//! Runs a saga: feeds it events and fired timers, records its progress, dispatches its
//! commands.
//!
//! For each input the [`SagaRunner`] loads the instance (replaying its stream), runs the step,
//! dispatches the commands, arms or cancels the step's timer, and appends what it accepted to
//! the instance's stream, expecting the version it loaded. The order is chosen so that a crash
//! at any point loses nothing: commands go out before the progress is recorded (a crash in
//! between re-runs the step when the event is delivered again, so commands are delivered at
//! least once, with the same command ids, which the aggregates deduplicate); a new timer is
//! stored before the record that arms it (a timer nobody recorded is ignored when it fires);
//! an old timer is cancelled after the record that disarms it (a timer that fires anyway is
//! ignored, since the instance no longer waits for it).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use tracing::field::Empty;
use uuid::Uuid;

use super::error::SagaError;
use super::instance::Instance;
use super::progress::{Progress, SagaStatus, Summary};
use super::record::{Failed, Handled, SagaRecord, TimedOut};
use super::timer::{Timer, TimerStore};
use super::{Reaction, Saga, category};
use crate::backoff::Backoff;
use crate::checkpoint::{CheckpointStore, InMemoryCheckpointStore, SharedCheckpoints};
use crate::clock::{Clock, SystemClock};
use crate::codec::{Bincode, Codec};
use crate::command::{CommandContext, derive_id};
use crate::consumer::{ConsumerError, LogReader};
use crate::dispatch::{Dispatch, DispatchError, Dispatcher};
use crate::envelope::{EventMetadata, RecordedEvent};
use crate::event::EventSet;
use crate::event_store::EventStore;
use crate::stream::{Position, StreamId, Version};
use crate::trace::TraceContext;

/// How often [`SagaRunner::run_until_idle`] looks again while the log is behind its head.
const SETTLE_POLL: Duration = Duration::from_millis(2);

/// The most events [`SagaRunner::poll`] reads at once.
const BATCH: usize = 256;

/// The reader of the runner's own input from the log.
type Input<S> = LogReader<Arc<S>, SharedCheckpoints>;

/// Feeds one saga type its events and timers. See the module docs for the order of effects.
pub struct SagaRunner<G: Saga, S, D, T, C = Bincode> {
    store: Arc<S>,
    dispatcher: D,
    timers: T,
    codec: C,
    clock: Arc<dyn Clock>,
    lease: Duration,
    settle_timeout: Duration,
    /// How a dispatch that failed (not refused) is tried again before its step fails.
    dispatch_retry: Option<Backoff>,
    /// Where [`SagaRunner::poll`] reads the log from, and its checkpoint.
    input: tokio::sync::Mutex<Input<S>>,
    saga: PhantomData<fn() -> G>,
}

impl<G: Saga, S, D, T, C> fmt::Debug for SagaRunner<G, S, D, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaRunner")
            .field("saga", &G::NAME)
            .field("lease", &self.lease)
            .field("settle_timeout", &self.settle_timeout)
            .finish_non_exhaustive()
    }
}

impl<G: Saga, S: EventStore, D: Dispatcher, T: TimerStore> SagaRunner<G, S, D, T, Bincode> {
    /// A runner reading events from and recording progress in `store`, sending commands through
    /// `dispatcher` and keeping timeouts in `timers`; on the system clock, with the default
    /// codec.
    pub fn new(store: S, dispatcher: D, timers: T) -> Self {
        let store = Arc::new(store);
        let settle_timeout = Duration::from_secs(30);
        Self {
            input: tokio::sync::Mutex::new(input::<G, S>(
                &store,
                SharedCheckpoints::new(InMemoryCheckpointStore::new()),
                settle_timeout,
            )),
            store,
            dispatcher,
            timers,
            codec: Bincode,
            clock: Arc::new(SystemClock),
            lease: Duration::from_secs(30),
            settle_timeout,
            dispatch_retry: None,
            saga: PhantomData,
        }
    }
}

impl<G: Saga, S: EventStore, D: Dispatcher, T: TimerStore, C: Codec> SagaRunner<G, S, D, T, C> {
    /// Decodes inputs and encodes records with `codec`.
    pub fn with_codec<C2: Codec>(self, codec: C2) -> SagaRunner<G, S, D, T, C2> {
        SagaRunner {
            store: self.store,
            dispatcher: self.dispatcher,
            timers: self.timers,
            codec,
            clock: self.clock,
            lease: self.lease,
            settle_timeout: self.settle_timeout,
            dispatch_retry: self.dispatch_retry,
            input: self.input,
            saga: PhantomData,
        }
    }

    /// Reads the time (for timers and records) from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Tries a command again when its dispatch fails for a reason other than a refusal — the
    /// store or the bus unreachable, a reply that never came, the dispatch's circuit breaker
    /// open — waiting as `retry` says on the runner's clock and sending it with the same id, so
    /// it takes effect once. Once `retry`'s attempts are spent, the step fails with the last
    /// error as a refused command would fail it: the instance records the failure with its
    /// reason and compensates the steps it completed (a compensation that keeps failing is
    /// reported with its error among [`Progress::refused_compensations`], and logged, as a refused
    /// one is). [`Backoff::STANDARD`] waits 1, 2, 4 and 8 s.
    ///
    /// Without it (the default) such a failure fails the input instead: nothing is recorded,
    /// and the event is handled again later, for as long as it takes.
    #[must_use]
    pub fn with_dispatch_retry(mut self, retry: Backoff) -> Self {
        self.dispatch_retry = Some(retry);
        self
    }

    /// How long a claimed timer is reserved for this runner before another may fire it
    /// (default 30 s).
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long [`run_until_idle`](Self::run_until_idle) waits for the gap-safe log to show
    /// events already committed, while older transactions on the database run, before it
    /// gives up with [`SagaError::Behind`] (default 30 s).
    #[must_use]
    pub fn with_settle_timeout(mut self, timeout: Duration) -> Self {
        self.settle_timeout = timeout;
        let input = self.input.get_mut();
        *input = self::input::<G, S>(&self.store, input_checkpoints(input), timeout);
        self
    }

    /// Keeps the position [`poll`](Self::poll) reads the global log from in `checkpoints`,
    /// under [`checkpoint_name`](Self::checkpoint_name), so a restarted runner resumes where
    /// the last one stopped instead of rereading the log. Without it the position lives in
    /// memory and a new runner starts from the beginning (correct, only slower: every instance
    /// ignores what it recorded already).
    #[must_use]
    pub fn with_checkpoints(mut self, checkpoints: impl CheckpointStore) -> Self {
        *self.input.get_mut() =
            input::<G, S>(&self.store, SharedCheckpoints::new(checkpoints), self.settle_timeout);
        self
    }

    /// The name of the runner's checkpoint: `saga.{name}`.
    pub fn checkpoint_name(&self) -> String {
        category(G::NAME)
    }

    /// The event store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The event store, shared: what the saga's [log input](super::from_log) reads.
    pub fn shared_store(&self) -> Arc<S> {
        Arc::clone(&self.store)
    }

    /// The clock the runner reads the time from and its timers wait on.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// The timer store.
    pub fn timers(&self) -> &T {
        &self.timers
    }

    /// The stream of instance `key`.
    ///
    /// # Errors
    /// When the key does not make a stream id.
    pub fn stream_id(&self, key: &str) -> Result<StreamId, SagaError> {
        super::stream_id::<G>(key)
    }

    /// Rebuilds instance `key`; `None` when it never started.
    ///
    /// # Errors
    /// When the store fails or a record cannot be decoded.
    pub async fn load(&self, key: &str) -> Result<Option<Summary<G>>, SagaError> {
        super::load(&*self.store, &self.codec, key).await
    }

    async fn load_instance(&self, key: &str) -> Result<Instance<G>, SagaError> {
        Instance::load(&*self.store, &self.codec, self.stream_id(key)?).await
    }

    /// Appends `records` to `instance`'s stream, caused by the input of `context`.
    async fn record(
        &self,
        instance: &Instance<G>,
        records: Vec<SagaRecord>,
        context: CommandContext,
    ) -> Result<(), SagaError> {
        let metadata = EventMetadata::caused_by(
            context.correlation_id,
            context.causation_id,
            self.clock.now(),
        )
        .in_current_trace();
        instance.record(&*self.store, &self.codec, records, &metadata).await
    }

    /// Feeds one event. `None` when the saga has nothing to do with it: not one of its events,
    /// an event for an instance that never started (or already started, for a start event),
    /// a duplicate delivery, an instance that already finished, or an event its step left
    /// aside ([`Reaction::Ignore`]).
    ///
    /// # Errors
    /// See [`SagaError`]; nothing was recorded, and feeding the event again is safe.
    pub async fn handle(&self, event: &RecordedEvent) -> Result<Option<Progress>, SagaError> {
        if !G::Event::NAMES.contains(&event.name.as_str()) {
            return Ok(None);
        }
        let input: G::Event =
            event.decode(&self.codec).map_err(|source| SagaError::stored(event, source))?;
        let (step, key) = (G::step(&input), G::key(&input));
        let span = tracing::info_span!(
            "saga.step",
            saga = G::NAME,
            key = %key,
            step = G::STEPS[step].name,
            event_id = %event.event_id,
            correlation_id = %event.metadata.correlation_id,
            status = Empty,
        );
        // The step belongs to the trace of the span that appended its event, wherever it ran.
        TraceContext::follow(event.metadata.trace, &span);
        let progress = self.take_step(event, input, step, key).instrument(span.clone()).await;
        record_status::<G>(&span, "event", G::STEPS[step].start, &progress);
        progress
    }

    /// Step `step` of instance `key` on `event` (decoded as `input`).
    async fn take_step(
        &self,
        event: &RecordedEvent,
        input: G::Event,
        step: usize,
        key: String,
    ) -> Result<Option<Progress>, SagaError> {
        let mut instance = self.load_instance(&key).await?;
        let started = instance.version != Version::ZERO;
        let ignored = if instance.processed.contains(&event.event_id) {
            Some("a duplicate delivery")
        } else if started == G::STEPS[step].start {
            Some(if started { "a second start" } else { "an event of an instance never started" })
        } else if instance.status != SagaStatus::Running {
            Some("an event after the instance finished")
        } else {
            None
        };
        if let Some(why) = ignored {
            tracing::debug!(saga = G::NAME, key, event = %event.event_id, "ignoring {why}");
            return Ok(None);
        }

        let correlation_id = *instance.correlation_id.get_or_insert(event.metadata.correlation_id);
        let context = CommandContext::caused_by(correlation_id, event.event_id);
        let disarmed = instance.armed.take();
        instance.completed.push(step);
        let mut progress = Progress {
            key: key.clone(),
            step: G::STEPS[step].name,
            timed_out: false,
            dispatched: Vec::new(),
            failure: None,
            compensations: Vec::new(),
            refused_compensations: Vec::new(),
            status: SagaStatus::Running,
        };
        let mut handled = Handled::of(G::STEPS[step].name, event);
        let failure = match instance.saga.handle(&input, Some(event)) {
            Ok(Reaction::Proceed(commands)) => {
                self.dispatch_step(commands, context, &mut progress).await?
            }
            Ok(Reaction::Ignore(reason)) => {
                // Nothing is recorded: the instance stays as its records left it.
                tracing::debug!(
                    saga = G::NAME,
                    key,
                    event = %event.event_id,
                    step = G::STEPS[step].name,
                    "the step left its event aside: {reason}"
                );
                return Ok(None);
            }
            Err(reason) => Some(reason),
        };
        let mut records = Vec::with_capacity(2);
        match failure {
            Some(reason) => {
                records.push(SagaRecord::Handled(handled));
                records.push(SagaRecord::Failed(Failed {
                    step: G::STEPS[step].name.to_owned(),
                    reason: reason.clone(),
                }));
                progress.failure = Some(reason);
                self.compensate(&instance, context, &mut progress).await?;
                progress.status = SagaStatus::Compensated;
            }
            None if G::STEPS[step].end => {
                records.push(SagaRecord::Handled(handled));
                progress.status = SagaStatus::Completed;
            }
            None => {
                if let Some(timeout) = G::STEPS[step].timeout {
                    let timer = Timer {
                        id: Uuid::now_v7(),
                        saga: G::NAME.to_owned(),
                        key: key.clone(),
                        step: G::STEPS[step].name.to_owned(),
                        correlation_id,
                        due_at: self
                            .clock
                            .now()
                            .checked_add_signed(
                                chrono::Duration::from_std(timeout)
                                    .unwrap_or(chrono::Duration::MAX),
                            )
                            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
                    };
                    handled.timer = Some(timer.id);
                    self.timers.schedule(timer).await?;
                }
                records.push(SagaRecord::Handled(handled));
            }
        }
        self.record(&instance, records, context).await?;
        if let Some((_, timer)) = disarmed {
            self.timers.cancel(timer).await?;
        }
        Ok(Some(progress))
    }

    /// Fires one claimed timer. `None` when it is stale: its step finished in time, it already
    /// fired, or the instance finished.
    ///
    /// # Errors
    /// See [`SagaError`]; nothing was recorded, and the timer is offered again when its lease
    /// runs out.
    pub async fn fire(&self, timer: &Timer) -> Result<Option<Progress>, SagaError> {
        if timer.saga != G::NAME {
            return Ok(None);
        }
        let span = tracing::info_span!(
            "saga.timeout",
            saga = G::NAME,
            key = %timer.key,
            step = %timer.step,
            timer_id = %timer.id,
            correlation_id = %timer.correlation_id,
            status = Empty,
        );
        let progress = self.fire_timer(timer).instrument(span.clone()).await;
        record_status::<G>(&span, "timeout", false, &progress);
        if let Ok(Some(_)) = progress {
            crate::metrics::timer_fired(G::NAME, timer.due_at, self.clock.now());
        }
        progress
    }

    async fn fire_timer(&self, timer: &Timer) -> Result<Option<Progress>, SagaError> {
        let mut instance = self.load_instance(&timer.key).await?;
        let step = match instance.armed {
            Some((step, armed))
                if armed == timer.id
                    && instance.status == SagaStatus::Running
                    && !instance.processed.contains(&timer.id) =>
            {
                step
            }
            _ => {
                tracing::debug!(saga = G::NAME, key = timer.key, timer = %timer.id, "ignoring a stale timer");
                self.timers.complete(timer.id).await?;
                return Ok(None);
            }
        };
        let correlation_id = instance.correlation_id.unwrap_or(timer.correlation_id);
        let context = CommandContext::caused_by(correlation_id, timer.id);
        let mut progress = Progress {
            key: timer.key.clone(),
            step: G::STEPS[step].name,
            timed_out: true,
            dispatched: Vec::new(),
            failure: Some(format!("step `{}` timed out", G::STEPS[step].name)),
            compensations: Vec::new(),
            refused_compensations: Vec::new(),
            status: SagaStatus::Compensated,
        };
        for (index, dispatch) in instance.saga.timed_out(step).into_iter().enumerate() {
            let command = command_context(context, "timeout", index);
            match self.dispatch(&dispatch, command).await {
                Ok(()) => progress.dispatched.push(dispatch),
                Err(DispatchError::Rejected { reason, .. }) => {
                    tracing::warn!(saga = G::NAME, key = timer.key, %dispatch, reason, "a timeout command was refused");
                }
                Err(failed @ DispatchError::Failed { .. }) if self.dispatch_retry.is_some() => {
                    tracing::warn!(saga = G::NAME, key = timer.key, %dispatch, error = %failed, "a timeout command kept failing");
                }
                Err(error) => return Err(SagaError::Dispatch(error)),
            }
        }
        self.compensate(&instance, context, &mut progress).await?;
        instance.armed = None;
        let record = SagaRecord::TimedOut(TimedOut {
            step: G::STEPS[step].name.to_owned(),
            timer_id: timer.id,
        });
        self.record(&instance, vec![record], context).await?;
        self.timers.complete(timer.id).await?;
        Ok(Some(progress))
    }

    /// Claims the timers due on the runner's clock and fires them.
    ///
    /// # Errors
    /// The first timer that failed; the others claimed with it are offered again when their
    /// lease runs out.
    pub async fn fire_due(&self) -> Result<Vec<Progress>, SagaError> {
        self.fire_due_by(self.clock.now()).await
    }

    /// Claims the timers due by `due_by` (at the latest the runner's clock) and fires them,
    /// each leased until the runner's clock plus the lease: what [`SagaTimers`](super::SagaTimers)
    /// does when it holds back the timeouts the saga's input has not caught up with.
    pub(super) async fn fire_due_by(
        &self,
        due_by: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Progress>, SagaError> {
        let now = self.clock.now();
        let due_by = due_by.min(now);
        // The store leases from the time it is given: lengthen the lease by what that time is
        // behind the clock.
        let lease = self.lease + (now - due_by).to_std().unwrap_or_default();
        let due = self.timers.claim_due(G::NAME, due_by, lease, BATCH).await?;
        let mut fired = Vec::new();
        for timer in &due {
            if let Some(progress) = self.fire(timer).await? {
                fired.push(progress);
            }
        }
        Ok(fired)
    }

    /// Feeds the next batch of events from the store's global log, after the last position this
    /// runner processed, and returns how many it read and what they did.
    ///
    /// The position is saved to the runner's checkpoint store after the batch (see
    /// [`with_checkpoints`](Self::with_checkpoints)); a crash before that replays the batch,
    /// which the instances ignore as duplicates.
    ///
    /// # Errors
    /// The first input that failed; the position stays before it (and what was processed
    /// before it is saved), so the next poll retries it.
    pub async fn poll(&self) -> Result<(usize, Vec<Progress>), SagaError> {
        let mut input = self.input.lock().await;
        let events =
            input.next_batch().await.map_err(|error| SagaError::from_consumer(error.widen()))?;
        let mut done = Vec::new();
        let outcome = self.handle_each(&events, &mut done).await;
        if let Some(reached) = outcome.reached {
            input.commit(reached).await.map_err(|error| SagaError::from_consumer(error.widen()))?;
        }
        match outcome.failure {
            Some(error) => Err(error),
            None => Ok((events.len(), done)),
        }
    }

    /// Handles `events` in order until one fails: how far it got, and the failure.
    async fn handle_each(&self, events: &[RecordedEvent], done: &mut Vec<Progress>) -> Handling {
        let mut reached = None;
        for event in events {
            match self.handle(event).await {
                Ok(progress) => done.extend(progress),
                Err(error) => return Handling { reached, failure: Some(error) },
            }
            reached = Some(event.position);
        }
        Handling { reached, failure: None }
    }

    /// Handles every event committed before it was called — and the events the saga's own
    /// commands cause meanwhile — then fires the due timers, and repeats while that produced
    /// anything.
    ///
    /// "Committed" is the store's [`head`](EventStore::head): a gap-safe store may keep recent
    /// commits out of [`read_all`](EventStore::read_all) for a moment while older transactions
    /// run, so the runner reads until it has reached the head it took when it started
    /// ([`LogReader::handle_to_head`]). It takes a new one only after its own inputs made
    /// progress, so other writers' later commits never keep it going. Timers fire only once the
    /// log has reached that head: a timeout never overtakes a committed event that would have
    /// cancelled it.
    ///
    /// # Errors
    /// The first input that failed (what was handled before it is checkpointed);
    /// [`SagaError::Behind`] when the log stopped short of the head for the
    /// [settle timeout](Self::with_settle_timeout) without any event read.
    pub async fn run_until_idle(&self) -> Result<Vec<Progress>, SagaError> {
        let mut done = Vec::new();
        let mut input = self.input.lock().await;
        loop {
            let before = done.len();
            let mut handled_up_to = None;
            let read = input
                .handle_to_head(&mut async |events: &[RecordedEvent]| {
                    let outcome = self.handle_each(events, &mut done).await;
                    handled_up_to = outcome.reached;
                    outcome.failure.map_or(Ok(()), Err)
                })
                .await;
            if let Err(error) = read {
                if let (ConsumerError::Handler { .. }, Some(reached)) = (&error, handled_up_to) {
                    // Keep what the failing batch handled before the failure.
                    input
                        .commit(reached)
                        .await
                        .map_err(|error| SagaError::from_consumer(error.widen()))?;
                }
                return Err(SagaError::from_consumer(error));
            }
            if done.len() > before {
                // The saga's commands appended events the old head does not cover.
                continue;
            }
            let fired = self.fire_due().await?;
            if fired.is_empty() {
                return Ok(done);
            }
            done.extend(fired);
        }
    }

    /// Dispatches a step's commands in order; the first rejection stops the step and is
    /// returned as its failure.
    async fn dispatch_step(
        &self,
        commands: Vec<Dispatch>,
        context: CommandContext,
        progress: &mut Progress,
    ) -> Result<Option<String>, SagaError> {
        for (index, dispatch) in commands.into_iter().enumerate() {
            let command = command_context(context, "step", index);
            match self.dispatch(&dispatch, command).await {
                Ok(()) => progress.dispatched.push(dispatch),
                Err(rejected @ DispatchError::Rejected { .. }) => {
                    return Ok(Some(rejected.to_string()));
                }
                Err(failed @ DispatchError::Failed { .. }) if self.dispatch_retry.is_some() => {
                    return Ok(Some(failed.to_string()));
                }
                Err(error) => return Err(SagaError::Dispatch(error)),
            }
        }
        Ok(None)
    }

    /// Sends `dispatch`, trying it again as [`with_dispatch_retry`](Self::with_dispatch_retry)
    /// says while it fails; the last error once the attempts are spent.
    async fn dispatch(
        &self,
        dispatch: &Dispatch,
        command: CommandContext,
    ) -> Result<(), DispatchError> {
        let Some(retry) = self.dispatch_retry else {
            return self.dispatcher.dispatch(dispatch.clone(), command).await;
        };
        let failed = |error: &DispatchError| matches!(error, DispatchError::Failed { .. });
        let sent = retry
            .retry(&*self.clock, failed, || self.dispatcher.dispatch(dispatch.clone(), command))
            .await;
        if let Err(error) = &sent
            && failed(error)
        {
            tracing::warn!(saga = G::NAME, %dispatch, %error, "dispatch failed after its attempts");
        }
        sent
    }

    /// Dispatches the compensations of every completed step, latest first.
    async fn compensate(
        &self,
        instance: &Instance<G>,
        context: CommandContext,
        progress: &mut Progress,
    ) -> Result<(), SagaError> {
        let compensations: Vec<Dispatch> = instance
            .completed
            .iter()
            .rev()
            .flat_map(|&step| instance.saga.compensate(step))
            .collect();
        for (index, dispatch) in compensations.into_iter().enumerate() {
            let command = command_context(context, "compensation", index);
            match self.dispatch(&dispatch, command).await {
                Ok(()) => progress.compensations.push(dispatch),
                Err(DispatchError::Rejected { reason, .. }) => {
                    tracing::warn!(saga = G::NAME, stream = %instance.stream, %dispatch, reason, "a compensation was refused");
                    progress.refused_compensations.push((dispatch, reason));
                }
                Err(failed @ DispatchError::Failed { .. }) if self.dispatch_retry.is_some() => {
                    let reason = failed.to_string();
                    tracing::warn!(saga = G::NAME, stream = %instance.stream, %dispatch, reason, "a compensation kept failing");
                    progress.refused_compensations.push((dispatch, reason));
                }
                Err(error) => return Err(SagaError::Dispatch(error)),
            }
        }
        Ok(())
    }
}

/// What [`SagaRunner::handle_each`] got through.
struct Handling {
    /// The last event handled.
    reached: Option<Position>,
    /// The error that stopped it.
    failure: Option<SagaError>,
}

/// The runner's reader of the log, with its settle timeout.
fn input<G: Saga, S: EventStore>(
    store: &Arc<S>,
    checkpoints: SharedCheckpoints,
    settle_timeout: Duration,
) -> Input<S> {
    LogReader::new(category(G::NAME), Arc::clone(store), checkpoints)
        .batch_size(BATCH)
        .settle(SETTLE_POLL, settle_timeout)
}

fn input_checkpoints<S: EventStore>(input: &Input<S>) -> SharedCheckpoints {
    input.checkpoints().clone()
}

/// The context of the `index`-th command of kind `kind` (`step`, `compensation`, `timeout`)
/// sent for one input: its command id is derived from the input's id (the event's or the
/// timer's), so re-running the input after a crash sends the same ids and the aggregates
/// answer the repeats as duplicates. The kinds keep a step's commands, its compensations and a
/// timeout's commands apart.
fn command_context(input: CommandContext, kind: &str, index: usize) -> CommandContext {
    input.with_command_id(derive_id(input.causation_id, &format!("{kind}/{index}")))
}

/// What an input (an `event` of a `start` step, or not, or a `timeout`) did to its instance,
/// as its span and [`metrics::SAGA_INPUTS`](crate::metrics::SAGA_INPUTS) record it: the status it
/// left the instance in, `ignored` (a duplicate, a stale timer, an event of no running instance)
/// or `failed`.
fn record_status<G: Saga>(
    span: &tracing::Span,
    input: &'static str,
    start: bool,
    progress: &Result<Option<Progress>, SagaError>,
) {
    let (status, finished) = match progress {
        Ok(Some(progress)) => match progress.status {
            SagaStatus::Running => ("running", None),
            SagaStatus::Completed => ("completed", Some("completed")),
            SagaStatus::Compensated => ("compensated", Some("compensated")),
        },
        Ok(None) => ("ignored", None),
        Err(_) => ("failed", None),
    };
    span.record("status", status);
    let started = start && matches!(progress, Ok(Some(_)));
    crate::metrics::saga_input(G::NAME, input, status, started, finished);
}
