//! The store: owns a state, a reducer and an environment, and runs the effects the reducer
//! returns.
//!
//! [`Store::send`] reduces the action right away under the store's lock, then every action fed
//! back synchronously, in order; asynchronous effects run on Tokio tasks and feed their actions
//! back through the same queue. Actions arriving from several tasks at once are processed one
//! at a time, in the order they take the lock. A reducer or effect that panics is reported
//! through `tracing` and the store keeps working.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::clock::{Clock, SystemClock};
use crate::executor::{Executor, Tracker};
use crate::reducer::Reducer;

/// Runs a [`Reducer`] over a state, executing its effects. Cheap to clone: clones share one
/// store.
///
/// ```
/// use std::time::Duration;
/// use composable::{Effect, Store};
/// use composable::reducer::reducer_fn;
///
/// #[derive(Debug)]
/// enum Action { Start, Tick }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let timer = reducer_fn(|ticks: &mut u32, action: Action, _: &()| match action {
///     Action::Start => Effect::delay(Duration::from_millis(1), Action::Tick),
///     Action::Tick => { *ticks += 1; Effect::none() }
/// });
/// let store = Store::new(timer, 0, ());
/// store.send(Action::Start).await; // waits for the delay and the Tick it feeds back
/// assert_eq!(store.with_state(|ticks| *ticks), 1);
/// # }
/// ```
pub struct Store<R: Reducer> {
    inner: Arc<Inner<R>>,
}

struct Inner<R: Reducer> {
    reducer: R,
    env: R::Environment,
    core: Mutex<Core<R>>,
    executor: Executor<R::Action>,
}

struct Core<R: Reducer> {
    state: R::State,
    /// Actions fed back synchronously while one `send` is processed. The lock is held for the
    /// whole drain, so it is empty between sends; it is kept only to reuse its allocation.
    queue: VecDeque<R::Action>,
}

impl<R: Reducer> Clone for Store<R> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<R: Reducer> fmt::Debug for Store<R>
where
    R::State: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("state", &self.inner.core().state)
            .field("running_effects", &self.inner.executor.running().running())
            .finish()
    }
}

impl<R: Reducer> Store<R> {
    /// A store on the system clock.
    ///
    /// # Panics
    /// Outside a Tokio runtime: effects are spawned on the runtime current at creation.
    pub fn new(reducer: R, state: R::State, env: R::Environment) -> Self {
        Self::with_clock(reducer, state, env, SystemClock)
    }

    /// A store whose delays run on `clock` (a [`TestClock`](crate::TestClock) in tests).
    ///
    /// # Panics
    /// Outside a Tokio runtime: effects are spawned on the runtime current at creation.
    pub fn with_clock(reducer: R, state: R::State, env: R::Environment, clock: impl Clock) -> Self {
        let inner = Arc::new_cyclic(|weak: &Weak<Inner<R>>| {
            let weak = weak.clone();
            let deliver = Arc::new(move |action, mut origin: Option<Tracker>| {
                // Work that outlives its store has nowhere to deliver to.
                if let Some(inner) = weak.upgrade() {
                    inner.process(action, &mut origin);
                }
            });
            Inner {
                reducer,
                env,
                core: Mutex::new(Core { state, queue: VecDeque::new() }),
                executor: Executor::new(std::any::type_name::<R>(), Arc::new(clock), deliver),
            }
        });
        Self { inner }
    }

    /// Reduces `action` (and every action it feeds back synchronously) and starts its effects.
    /// The returned handle can be awaited until every effect this action started, and every
    /// effect of the actions those fed back, has finished; dropping it lets them run on.
    pub fn send(&self, action: R::Action) -> SendHandle {
        let mut origin = None;
        self.inner.process(action, &mut origin);
        SendHandle { tracker: origin }
    }

    /// Reads the state without cloning it. Waits while an action is being reduced.
    pub fn with_state<T>(&self, read: impl FnOnce(&R::State) -> T) -> T {
        read(&self.inner.core().state)
    }

    /// A clone of the whole state.
    pub fn state(&self) -> R::State
    where
        R::State: Clone,
    {
        self.with_state(Clone::clone)
    }

    /// The environment the reducer runs with.
    pub fn env(&self) -> &R::Environment {
        &self.inner.env
    }

    /// The clock the store's delays run on.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        self.inner.executor.clock()
    }

    /// How many effects are running.
    pub fn running_effects(&self) -> usize {
        self.inner.executor.running().running()
    }

    /// Completes once no effect of this store is running.
    pub async fn idle(&self) {
        self.inner.executor.running().idle().await;
    }
}

impl<R: Reducer> Inner<R> {
    fn core(&self) -> MutexGuard<'_, Core<R>> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reduces `action` and everything it feeds back synchronously, in order. Work spawned on
    /// the way is counted by `origin`, created only if something is spawned.
    fn process(&self, action: R::Action, origin: &mut Option<Tracker>) {
        let mut core = self.core();
        let Core { state, queue } = &mut *core;
        self.reduce_one(state, action, origin, queue);
        while let Some(action) = queue.pop_front() {
            self.reduce_one(state, action, origin, queue);
        }
    }

    fn reduce_one(
        &self,
        state: &mut R::State,
        action: R::Action,
        origin: &mut Option<Tracker>,
        queue: &mut VecDeque<R::Action>,
    ) {
        let reduced = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.reducer.reduce(state, action, &self.env)
        }));
        match reduced {
            Ok(effect) if effect.is_none() => {}
            Ok(effect) => self.executor.start(effect, origin, queue),
            Err(_) => tracing::error!(
                "a reducer panicked; its action was dropped and the store keeps running"
            ),
        }
    }
}

/// The effects started by one [`Store::send`]. Await it (or call
/// [`finish`](SendHandle::finish)) to wait until they have all finished.
#[must_use = "a send handle does nothing unless awaited; drop it to let the effects run on"]
#[derive(Clone, Default)]
pub struct SendHandle {
    tracker: Option<Tracker>,
}

impl fmt::Debug for SendHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendHandle").field("finished", &self.is_finished()).finish()
    }
}

impl SendHandle {
    /// Whether every effect started by the action has finished.
    pub fn is_finished(&self) -> bool {
        self.tracker.as_ref().is_none_or(|t| t.running() == 0)
    }

    /// Waits until every effect started by the action has finished.
    pub async fn finish(self) {
        if let Some(tracker) = self.tracker {
            tracker.idle().await;
        }
    }
}

impl IntoFuture for SendHandle {
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.finish())
    }
}
