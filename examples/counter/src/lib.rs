//! A counter: plain increments, a ticking timer that can be stopped, and a fact about the current
//! number fetched through the environment.

use std::sync::Arc;
use std::time::Duration;

use composable::{Effect, Reducer};
use futures::future::BoxFuture;

/// What the screen shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counter {
    /// The number.
    pub count: i64,
    /// Whether the timer ticks.
    pub timer_running: bool,
    /// The last fact fetched.
    pub fact: Option<String>,
}

/// What can happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// +1.
    Increment,
    /// -1.
    Decrement,
    /// Start ticking once per [`TICK`].
    StartTimer,
    /// Stop ticking.
    StopTimer,
    /// One tick of the timer.
    Tick,
    /// Ask for a fact about the current number.
    FactRequested,
    /// The fact arrived.
    FactLoaded(String),
}

/// How often the timer ticks.
pub const TICK: Duration = Duration::from_secs(1);

/// The id of the timer's effect, so `StopTimer` can cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct TimerId;

/// Where facts come from.
pub trait Facts: Send + Sync + 'static {
    /// A fact about `n`.
    fn fact(&self, n: i64) -> BoxFuture<'static, String>;
}

/// Facts computed locally.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFacts;

impl Facts for LocalFacts {
    fn fact(&self, n: i64) -> BoxFuture<'static, String> {
        let parity = if n % 2 == 0 { "even" } else { "odd" };
        Box::pin(async move { format!("{n} is {parity}") })
    }
}

/// What the counter needs from the outside world.
#[derive(Clone)]
pub struct Env {
    /// Where facts come from.
    pub facts: Arc<dyn Facts>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}

/// The counter's reducer.
#[derive(Debug, Clone, Copy, Default)]
pub struct CounterReducer;

impl Reducer for CounterReducer {
    type State = Counter;
    type Action = Action;
    type Environment = Env;

    fn reduce(&self, state: &mut Counter, action: Action, env: &Env) -> Effect<Action> {
        match action {
            Action::Increment => {
                state.count += 1;
                Effect::none()
            }
            Action::Decrement => {
                state.count -= 1;
                Effect::none()
            }
            Action::StartTimer if state.timer_running => Effect::none(),
            Action::StartTimer => {
                state.timer_running = true;
                Effect::delay(TICK, Action::Tick).cancellable(TimerId)
            }
            Action::StopTimer => {
                state.timer_running = false;
                Effect::cancel(TimerId)
            }
            Action::Tick if !state.timer_running => Effect::none(),
            Action::Tick => {
                state.count += 1;
                Effect::delay(TICK, Action::Tick).cancellable(TimerId)
            }
            Action::FactRequested => {
                state.fact = None;
                Effect::future(env.facts.fact(state.count)).map(Action::FactLoaded)
            }
            Action::FactLoaded(fact) => {
                state.fact = Some(fact);
                Effect::none()
            }
        }
    }
}
