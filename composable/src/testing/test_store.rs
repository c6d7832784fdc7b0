//! An exhaustive test harness for reducers, after TCA's `TestStore`.

use std::collections::VecDeque;
use std::fmt::{self, Debug};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{TestClock, settle};
use crate::executor::{Executor, Tracker};
use crate::reducer::Reducer;
use crate::testing::diff::debug_diff;

/// How strictly a [`TestStore`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exhaustivity {
    /// Every state change must be stated in full, every fed-back action received, and no effect
    /// may still run at the end. The default.
    #[default]
    On,
    /// For integration tests: the state closures assert only the fields they set, actions not
    /// asserted are reduced and skipped, and effects still running at the end are cancelled.
    Off,
}

/// Drives a reducer the way a [`Store`](crate::Store) does, checking every step.
///
/// Each [`send`](TestStore::send) states the exact state change it expects; each action an effect
/// feeds back must be [`receive`](TestStore::receive)d, in order, with its state change; and the
/// test fails on any action left unreceived or any effect still running when it ends. Delays run
/// on a [`TestClock`] the test moves with [`advance`](TestStore::advance).
///
/// ```
/// use std::time::Duration;
/// use composable::Effect;
/// use composable::reducer::reducer_fn;
/// use composable::testing::TestStore;
///
/// #[derive(Debug, Clone, PartialEq)]
/// enum Action { Start, Tick }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let timer = reducer_fn(|ticks: &mut u32, action: Action, _: &()| match action {
///     Action::Start => Effect::delay(Duration::from_secs(1), Action::Tick),
///     Action::Tick => { *ticks += 1; Effect::none() }
/// });
/// let mut store = TestStore::new(timer, 0, ());
/// store.send(Action::Start, |_| {}).await;
/// store.advance(Duration::from_secs(1)).await;
/// store.receive(Action::Tick, |ticks| *ticks = 1).await;
/// store.finish().await;
/// # }
/// ```
pub struct TestStore<R: Reducer>
where
    R::State: Clone + PartialEq + Debug,
    R::Action: Debug,
{
    reducer: R,
    env: R::Environment,
    state: R::State,
    executor: Executor<R::Action>,
    inbox: Arc<Inbox<R::Action>>,
    clock: TestClock,
    exhaustivity: Exhaustivity,
    timeout: Duration,
    finished: bool,
    /// Every action reduced and the state after it, for [`TestStore::timeline`].
    timeline: String,
}

struct Inbox<A> {
    actions: Mutex<VecDeque<A>>,
    arrived: Notify,
}

impl<A> Inbox<A> {
    fn actions(&self) -> MutexGuard<'_, VecDeque<A>> {
        self.actions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, action: A) {
        self.actions().push_back(action);
        self.arrived.notify_waiters();
    }
}

impl<R: Reducer> TestStore<R>
where
    R::State: Clone + PartialEq + Debug,
    R::Action: Debug,
{
    /// A test store whose delays run on a fresh [`TestClock`].
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn new(reducer: R, state: R::State, env: R::Environment) -> Self {
        Self::with_clock(reducer, state, env, TestClock::new())
    }

    /// A test store whose delays run on `clock`; pass a clone of the clock the environment holds
    /// so reducers and effects see the same time.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn with_clock(reducer: R, state: R::State, env: R::Environment, clock: TestClock) -> Self {
        let inbox =
            Arc::new(Inbox { actions: Mutex::new(VecDeque::new()), arrived: Notify::new() });
        let deliver = {
            let inbox = Arc::clone(&inbox);
            Arc::new(move |action, _origin: Option<Tracker>| inbox.push(action))
        };
        Self {
            reducer,
            env,
            state,
            executor: Executor::new(std::any::type_name::<R>(), Arc::new(clock.clone()), deliver),
            inbox,
            clock,
            exhaustivity: Exhaustivity::On,
            timeout: Duration::from_secs(1),
            finished: false,
            timeline: String::new(),
        }
    }

    /// Sets how strictly the store checks.
    #[must_use]
    pub fn exhaustivity(mut self, exhaustivity: Exhaustivity) -> Self {
        self.exhaustivity = exhaustivity;
        self
    }

    /// How long [`receive`](TestStore::receive) waits, in real time, for an effect to feed an
    /// action back (default one second). Delays on the test clock don't count: advance it.
    #[must_use]
    pub fn receive_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The current state.
    pub fn state(&self) -> &R::State {
        &self.state
    }

    /// Every action reduced so far — sent, received, or (non-exhaustive) skipped — and the
    /// state after each, as text for a snapshot test:
    /// `insta::assert_snapshot!(store.timeline())`.
    pub fn timeline(&self) -> &str {
        &self.timeline
    }

    /// The environment.
    pub fn env(&self) -> &R::Environment {
        &self.env
    }

    /// The clock the store's delays run on.
    pub fn clock(&self) -> &TestClock {
        &self.clock
    }

    /// How many effects are running.
    pub fn running_effects(&self) -> usize {
        self.executor.running().running()
    }

    /// Sends `action` and checks the state change: `expect` gets the state as it was and must
    /// turn it into exactly the state after (with [`Exhaustivity::Off`]: must leave the new
    /// state unchanged, so it asserts only what it sets).
    ///
    /// # Panics
    /// On a state change other than expected, and (exhaustive) when actions fed back earlier have
    /// not been received yet.
    pub async fn send(&mut self, action: R::Action, expect: impl FnOnce(&mut R::State)) {
        match self.exhaustivity {
            Exhaustivity::On => {
                let pending = self.pending();
                if !pending.is_empty() {
                    panic!(
                        "must receive the {} action(s) fed back by effects before sending {action:?}:\n{}",
                        pending.len(),
                        list(&pending)
                    );
                }
            }
            Exhaustivity::Off => self.skip_received_actions(),
        }
        let description = format!("sending {action:?}");
        self.step(action, expect, &description);
        settle().await;
    }

    /// Waits for the next action an effect fed back, checks that it equals `expected`, reduces it,
    /// and checks the state change like [`send`](TestStore::send). With
    /// [`Exhaustivity::Off`], actions before the expected one are reduced and skipped.
    ///
    /// # Panics
    /// When no action arrives in time, when a different action arrives (exhaustive), or on an
    /// unexpected state change.
    pub async fn receive(&mut self, expected: R::Action, expect: impl FnOnce(&mut R::State))
    where
        R::Action: PartialEq,
    {
        let description = format!("{expected:?}");
        let action = self.next_matching(|action| *action == expected, &description).await;
        if let Err(action) = action {
            panic!(
                "received an unexpected action (- expected, + received):\n{}",
                debug_diff(&expected, &action)
            );
        }
        self.step(expected, expect, &format!("receiving {description}"));
        settle().await;
    }

    /// Like [`receive`](TestStore::receive), for actions without `PartialEq`: the next action
    /// must satisfy `matches`.
    ///
    /// # Panics
    /// As [`receive`](TestStore::receive).
    pub async fn receive_with(
        &mut self,
        matches: impl Fn(&R::Action) -> bool,
        expect: impl FnOnce(&mut R::State),
    ) {
        match self.next_matching(&matches, "an action satisfying the predicate").await {
            Ok(action) => {
                let description = format!("receiving {action:?}");
                self.step(action, expect, &description);
            }
            Err(action) => panic!("received {action:?}, which does not satisfy the predicate"),
        }
        settle().await;
    }

    /// Moves the test clock forward, firing due delays and letting their tasks run.
    pub async fn advance(&self, duration: Duration) {
        settle().await;
        self.clock.advance(duration).await;
        settle().await;
    }

    /// Reduces every action fed back so far without asserting on it.
    pub fn skip_received_actions(&mut self) {
        while let Some(action) = self.pop() {
            self.skip(action);
        }
    }

    /// Cancels every running cancellable effect and waits for the rest to finish.
    pub async fn skip_in_flight_effects(&mut self) {
        self.executor.cancel_all();
        settle().await;
        let _ = tokio::time::timeout(self.timeout, self.executor.running().idle()).await;
    }

    /// Ends the test: fails when actions were fed back but never received, or when effects are
    /// still running (exhaustive). Non-exhaustive stores skip both.
    ///
    /// # Panics
    /// As described.
    pub async fn finish(mut self) {
        settle().await;
        if self.exhaustivity == Exhaustivity::Off {
            self.skip_received_actions();
            self.skip_in_flight_effects().await;
        }
        self.finished = true;
        self.check_finished();
    }

    fn check_finished(&self) {
        let pending = self.pending();
        if !pending.is_empty() {
            panic!(
                "{} action(s) fed back by effects were never received; assert them with `receive`:\n{}",
                pending.len(),
                list(&pending)
            );
        }
        let running = self.running_effects();
        if running > 0 {
            panic!(
                "{running} effect(s) are still running at the end of the test; advance the clock, receive their actions, cancel them, or call `skip_in_flight_effects`"
            );
        }
    }

    fn pending(&self) -> Vec<String> {
        self.inbox.actions().iter().map(|action| format!("{action:?}")).collect()
    }

    fn pop(&self) -> Option<R::Action> {
        self.inbox.actions().pop_front()
    }

    /// The next fed-back action; in non-exhaustive mode, the next one that `matches`, reducing
    /// the ones before it. `Err` holds an exhaustive mismatch.
    async fn next_matching(
        &mut self,
        matches: impl Fn(&R::Action) -> bool,
        description: &str,
    ) -> Result<R::Action, R::Action> {
        settle().await;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            while let Some(action) = self.pop() {
                if matches(&action) {
                    return Ok(action);
                }
                match self.exhaustivity {
                    Exhaustivity::On => return Err(action),
                    Exhaustivity::Off => self.skip(action),
                }
            }
            let arrived = self.inbox.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if !self.inbox.actions().is_empty() {
                continue;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "expected to receive {description}, but no action was fed back within {:?}{}",
                    self.timeout,
                    if self.clock.pending_sleeps() > 0 {
                        "; a delay is pending on the test clock: advance it first"
                    } else {
                        ""
                    }
                );
            }
        }
    }

    fn reduce(&mut self, action: R::Action) {
        let effect = self.reducer.reduce(&mut self.state, action, &self.env);
        let mut origin = None;
        let mut immediate = VecDeque::new();
        self.executor.start(effect, &mut origin, &mut immediate);
        for action in immediate {
            self.inbox.push(action);
        }
    }

    /// Reduces an action fed back without asserting on it.
    fn skip(&mut self, action: R::Action) {
        let description = format!("skipping {action:?}");
        self.reduce(action);
        self.record(&description);
    }

    fn record(&mut self, description: &str) {
        self.timeline.push_str(description);
        self.timeline.push('\n');
        super::timeline::write_state(&mut self.timeline, &self.state);
    }

    fn step(&mut self, action: R::Action, expect: impl FnOnce(&mut R::State), description: &str) {
        let before = self.state.clone();
        self.reduce(action);
        self.record(description);
        let mut expected = match self.exhaustivity {
            Exhaustivity::On => before,
            Exhaustivity::Off => self.state.clone(),
        };
        expect(&mut expected);
        if expected != self.state {
            panic!(
                "state after {description} does not match the expectation (- expected, + actual):\n{}",
                debug_diff(&expected, &self.state)
            );
        }
    }
}

fn list(items: &[String]) -> String {
    items.iter().map(|item| format!("    {item}\n")).collect()
}

impl<R: Reducer> Drop for TestStore<R>
where
    R::State: Clone + PartialEq + Debug,
    R::Action: Debug,
{
    fn drop(&mut self) {
        if !self.finished && !std::thread::panicking() && self.exhaustivity == Exhaustivity::On {
            self.check_finished();
        }
    }
}

impl<R: Reducer> fmt::Debug for TestStore<R>
where
    R::State: Clone + PartialEq + Debug,
    R::Action: Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestStore")
            .field("state", &self.state)
            .field("received", &self.pending())
            .field("running_effects", &self.running_effects())
            .field("exhaustivity", &self.exhaustivity)
            .finish_non_exhaustive()
    }
}
