//! given events → expected commands, for sagas; advance the test clock → expected timeout
//! handling and compensations.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::TryStreamExt;
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::clock::{Clock, TestClock};
use crate::codec::Bincode;
use crate::command::CommandContext;
use crate::dispatch::{Dispatch, DispatchError, Dispatcher};
use crate::envelope::{EventMetadata, NewEvent, RecordedEvent};
use crate::event_store::EventStore;
use crate::event_store::InMemoryEventStore;
use crate::saga::{InMemoryTimerStore, Progress, Saga, SagaRunner, SagaStatus};
use crate::stream::{ExpectedVersion, StreamId, Version};
use crate::testing::diff::debug_diff;

/// A [`Dispatcher`] that executes nothing: it records every command, and rejects those it was
/// told to refuse: every command of an aggregate, or the ones a predicate picks.
#[derive(Debug, Clone, Default)]
pub struct RecordingDispatcher {
    inner: Arc<Mutex<Recording>>,
}

#[derive(Debug, Default)]
struct Recording {
    dispatched: Vec<(Dispatch, CommandContext)>,
    /// Checked latest first: a later rule overrides an earlier one.
    refusals: Vec<Refusal>,
}

type Picks = Box<dyn Fn(&Dispatch) -> bool + Send + Sync>;

/// Commands of `aggregate` that `picks` selects are refused with `reason`.
struct Refusal {
    aggregate: &'static str,
    picks: Picks,
    reason: String,
}

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refusal")
            .field("aggregate", &self.aggregate)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl RecordingDispatcher {
    /// A dispatcher accepting everything.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Recording> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on, refuses every command for aggregate `A` with `reason`.
    pub fn reject<A: Aggregate>(&self, reason: impl Into<String>) {
        self.refuse::<A>(Box::new(|_| true), reason.into());
    }

    /// From now on, refuses the commands for aggregate `A` that `picks` selects, with `reason`;
    /// the others are accepted. `|command| matches!(command, AccountCommand::Deposit(_))`
    /// refuses one command type, and a predicate can look at the command's fields too.
    pub fn reject_if<A: Aggregate>(
        &self,
        picks: impl Fn(&A::Command) -> bool + Send + Sync + 'static,
        reason: impl Into<String>,
    ) {
        let picks = move |dispatch: &Dispatch| dispatch.command::<A>().is_some_and(&picks);
        self.refuse::<A>(Box::new(picks), reason.into());
    }

    fn refuse<A: Aggregate>(&self, picks: Picks, reason: String) {
        self.lock().refusals.push(Refusal { aggregate: A::STREAM, picks, reason });
    }

    /// From now on, accepts every command for aggregate `A` again.
    pub fn accept<A: Aggregate>(&self) {
        self.lock().refusals.retain(|refusal| refusal.aggregate != A::STREAM);
    }

    /// Takes the commands dispatched so far (accepted or not), with their flow.
    pub fn take(&self) -> Vec<(Dispatch, CommandContext)> {
        std::mem::take(&mut self.lock().dispatched)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

impl Dispatcher for RecordingDispatcher {
    async fn dispatch(
        &self,
        dispatch: Dispatch,
        context: CommandContext,
    ) -> Result<(), DispatchError> {
        let mut recording = self.lock();
        let refusal = recording
            .refusals
            .iter()
            .rev()
            .find(|refusal| refusal.aggregate == dispatch.aggregate() && (refusal.picks)(&dispatch))
            .map(|refusal| refusal.reason.clone());
        let (aggregate, id) = (dispatch.aggregate(), dispatch.id().to_owned());
        recording.dispatched.push((dispatch, context));
        match refusal {
            Some(reason) => Err(DispatchError::Rejected {
                aggregate,
                id,
                reason: reason.clone(),
                source: Box::new(Refused(reason)),
            }),
            None => Ok(()),
        }
    }
}

type Runner<G> = SagaRunner<G, InMemoryEventStore, RecordingDispatcher, InMemoryTimerStore>;

/// Tests a saga without aggregates: feed it events, check the commands it dispatches; move the
/// clock, check what its timeouts do. Everything it records goes to an in-memory event store,
/// and each check replays nothing from outside, so tests are deterministic.
///
/// ```
/// # use composable::{aggregate, apply, command, compensate, event, saga, start, step};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Default)] pub struct Order;
/// # #[derive(Debug, Clone, PartialEq)] pub struct Cancel;
/// # #[event(name = "order.cancelled", version = 1)]
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Cancelled;
/// # #[aggregate(stream = "order")]
/// # impl Order {
/// #     #[command] fn cancel(&self, _c: Cancel) -> Cancelled { Cancelled }
/// #     #[apply] fn cancelled(&mut self, _e: &Cancelled) {}
/// # }
/// # #[derive(Debug, Default)] pub struct Payment;
/// # #[derive(Debug, Clone, PartialEq)] pub struct Charge;
/// # #[event(name = "payment.charged", version = 1)]
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Charged { pub order: String }
/// # #[aggregate(stream = "payment")]
/// # impl Payment {
/// #     #[command] fn charge(&self, _c: Charge) -> Charged { Charged { order: String::new() } }
/// #     #[apply] fn charged(&mut self, _e: &Charged) {}
/// # }
/// # #[event(name = "order.placed", version = 1)]
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct OrderPlaced { pub order: String }
/// # #[derive(Debug, Default)] pub struct Checkout { order: String }
/// # #[saga(name = "checkout", key = order)]
/// # impl Checkout {
/// #     #[start(timeout = "5m")]
/// #     fn placed(&mut self, event: &OrderPlaced) -> Dispatch {
/// #         self.order.clone_from(&event.order);
/// #         Dispatch::to::<Payment>(&event.order, Charge)
/// #     }
/// #     #[step(end)] fn charged(&mut self, _event: &Charged) {}
/// #     #[compensate(placed)] fn cancel_order(&self) -> Dispatch { Dispatch::to::<Order>(&self.order, Cancel) }
/// # }
/// use std::time::Duration;
/// use composable::saga::{Dispatch, SagaStatus};
/// use composable::testing::SagaTest;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let mut test = SagaTest::<Checkout>::new();
/// test.given(OrderPlaced { order: "o1".into() }).await;
/// test.then_dispatched([Dispatch::to::<Payment>("o1", Charge)]);
/// test.advance(Duration::from_secs(300)).await;
/// test.then_dispatched([Dispatch::to::<Order>("o1", Cancel)]);
/// assert_eq!(test.status("o1").await, Some(SagaStatus::Compensated));
/// # });
/// ```
pub struct SagaTest<G: Saga> {
    runner: Runner<G>,
    dispatcher: RecordingDispatcher,
    clock: TestClock,
    correlation_id: Uuid,
    given: u64,
    last: Option<RecordedEvent>,
}

impl<G: Saga> fmt::Debug for SagaTest<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaTest")
            .field("saga", &G::NAME)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<G: Saga> Default for SagaTest<G> {
    fn default() -> Self {
        Self::new()
    }
}

impl<G: Saga> SagaTest<G> {
    /// A saga with no instances, on a fresh [`TestClock`].
    pub fn new() -> Self {
        let clock = TestClock::new();
        let dispatcher = RecordingDispatcher::new();
        let runner = SagaRunner::new(
            InMemoryEventStore::new(),
            dispatcher.clone(),
            InMemoryTimerStore::new(),
        )
        .with_clock(clock.clone());
        Self { runner, dispatcher, clock, correlation_id: Uuid::now_v7(), given: 0, last: None }
    }

    /// The runner, for what the kit doesn't wrap.
    pub fn runner(&self) -> &Runner<G> {
        &self.runner
    }

    /// The clock the timers run on.
    pub fn clock(&self) -> &TestClock {
        &self.clock
    }

    /// The flow every given event belongs to.
    pub fn correlation_id(&self) -> Uuid {
        self.correlation_id
    }

    /// From now on, every command for aggregate `A` is rejected with `reason`.
    pub fn reject<A: Aggregate>(&self, reason: impl Into<String>) {
        self.dispatcher.reject::<A>(reason);
    }

    /// From now on, the commands for aggregate `A` that `picks` selects are rejected with
    /// `reason`, and its other commands accepted: "the deposit is refused, the refund goes
    /// through" is
    /// `reject_if::<Account>(|c| matches!(c, AccountCommand::Deposit(_)), "account closed")`.
    pub fn reject_if<A: Aggregate>(
        &self,
        picks: impl Fn(&A::Command) -> bool + Send + Sync + 'static,
        reason: impl Into<String>,
    ) {
        self.dispatcher.reject_if::<A>(picks, reason);
    }

    /// From now on, every command for aggregate `A` is accepted again.
    pub fn accept<A: Aggregate>(&self) {
        self.dispatcher.accept::<A>();
    }

    /// Records `event` (as a real store would) and feeds it to the saga.
    ///
    /// # Panics
    /// When the saga fails to process it (a [`SagaError`](crate::saga::SagaError)).
    pub async fn given(&mut self, event: impl Into<G::Event>) -> Option<Progress> {
        self.given += 1;
        let event = event.into();
        let metadata =
            EventMetadata::caused_by(self.correlation_id, Uuid::now_v7(), self.clock.now());
        let new = NewEvent::encode(&event, &Bincode, metadata)
            .unwrap_or_else(|error| panic!("cannot encode {event:?}: {error}"));
        let stream = StreamId::new("given", self.given)
            .unwrap_or_else(|error| panic!("invalid test stream: {error}"));
        let store = self.runner.store();
        if let Err(error) = store.append(&stream, ExpectedVersion::Any, vec![new]).await {
            panic!("cannot record {event:?}: {error}");
        }
        let recorded = store.read_stream(&stream, Version::ZERO).try_next().await.ok().flatten();
        let Some(recorded) = recorded else {
            panic!("the given event {event:?} was not recorded");
        };
        self.last = Some(recorded.clone());
        self.deliver(&recorded).await
    }

    /// Delivers the last given event once more, as an at-least-once transport would.
    ///
    /// # Panics
    /// When nothing was given yet, or the saga fails to process it.
    pub async fn redeliver(&mut self) -> Option<Progress> {
        let Some(last) = self.last.clone() else {
            panic!("`redeliver` needs a `given` event first");
        };
        self.deliver(&last).await
    }

    async fn deliver(&self, event: &RecordedEvent) -> Option<Progress> {
        match self.runner.handle(event).await {
            Ok(progress) => progress,
            Err(error) => panic!("the saga failed on {}: {error}", event.name),
        }
    }

    /// Moves the clock on by `duration` and fires the timers that fell due.
    ///
    /// # Panics
    /// When a timer fails to fire.
    pub async fn advance(&mut self, duration: Duration) -> Vec<Progress> {
        self.clock.advance(duration).await;
        match self.runner.fire_due().await {
            Ok(progress) => progress,
            Err(error) => panic!("a timer failed to fire: {error}"),
        }
    }

    /// Checks that exactly `expected` were dispatched since the last check, in order, and
    /// forgets them.
    ///
    /// # Panics
    /// With a diff, when other commands were dispatched.
    #[track_caller]
    pub fn then_dispatched(&self, expected: impl IntoIterator<Item = Dispatch>) {
        let expected: Vec<Dispatch> = expected.into_iter().collect();
        let actual: Vec<Dispatch> =
            self.dispatcher.take().into_iter().map(|(dispatch, _)| dispatch).collect();
        if actual != expected {
            panic!(
                "the saga dispatched other commands (- expected, + actual):\n{}",
                debug_diff(&expected, &actual)
            );
        }
    }

    /// Checks that nothing was dispatched since the last check.
    ///
    /// # Panics
    /// When something was.
    #[track_caller]
    pub fn then_nothing_dispatched(&self) {
        self.then_dispatched([]);
    }

    /// The commands dispatched since the last check, with their flow, forgotten afterwards.
    pub fn take_dispatched(&self) -> Vec<(Dispatch, CommandContext)> {
        self.dispatcher.take()
    }

    /// Where instance `key` stands; `None` when it never started.
    ///
    /// # Panics
    /// When the instance can't be loaded.
    pub async fn status(&self, key: &str) -> Option<SagaStatus> {
        match self.runner.load(key).await {
            Ok(summary) => summary.map(|summary| summary.status),
            Err(error) => panic!("cannot load saga instance `{key}`: {error}"),
        }
    }
}
