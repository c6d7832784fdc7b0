//! given / when / then for aggregates: past events in, a command, the events (or error) out.

use std::fmt::Debug;

use crate::aggregate::Aggregate;
use crate::testing::diff::debug_diff;

/// Tests an aggregate's decisions without a store: fold the `given` events, decide the `when`
/// command, and check the `then` events or error. Failures panic with a readable diff, like the
/// [`TestStore`](crate::testing::TestStore). The guide's aggregates chapter
/// ([`crate::guide`]) has a complete, compiled example.
#[derive(Debug)]
pub struct AggregateTest<A: Aggregate> {
    env: A::Environment,
    state: A,
}

impl<A: Aggregate> AggregateTest<A> {
    /// A fresh aggregate with `env` as its environment.
    pub fn new(env: A::Environment) -> Self {
        Self { env, state: A::default() }
    }

    /// Folds these past events into the aggregate.
    #[must_use]
    pub fn given<E: Into<A::Event>>(mut self, events: impl IntoIterator<Item = E>) -> Self {
        for event in events {
            self.state.apply(&event.into());
        }
        self
    }

    /// Decides `command` against the state the given events built.
    pub fn when(self, command: impl Into<A::Command>) -> Decision<A> {
        let result = self.state.decide(command.into(), &self.env);
        Decision { state: self.state, result }
    }
}

/// The outcome of [`AggregateTest::when`], to be checked with a `then_*` method.
#[derive(Debug)]
#[must_use = "a decision checks nothing until one of its `then` methods is called"]
pub struct Decision<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Decision<A> {
    /// Checks that the command produced exactly `expected`, in order, and returns the state
    /// after applying them for further checks.
    ///
    /// # Panics
    /// When the command was rejected or produced other events.
    #[track_caller]
    pub fn then<E: Into<A::Event>>(self, expected: impl IntoIterator<Item = E>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().map(Into::into).collect();
        match self.result {
            Ok(events) if events == expected => {
                let mut state = self.state;
                for event in &events {
                    state.apply(event);
                }
                state
            }
            Ok(events) => panic!(
                "the command produced other events (- expected, + actual):\n{}",
                debug_diff(&expected, &events)
            ),
            Err(error) => panic!(
                "the command was rejected with {error:?} ({error}), but these events were expected:\n{expected:#?}"
            ),
        }
    }

    /// Checks that the command produced no events.
    ///
    /// # Panics
    /// When the command was rejected or produced events.
    #[track_caller]
    pub fn then_nothing(self) -> A {
        self.then(Vec::<A::Event>::new())
    }

    /// Checks that the command was rejected with exactly `expected`.
    ///
    /// # Panics
    /// When the command succeeded or failed differently.
    #[track_caller]
    pub fn then_error(self, expected: A::Error)
    where
        A::Error: PartialEq + Debug,
    {
        match self.result {
            Err(error) if error == expected => {}
            Err(error) => panic!(
                "the command was rejected with another error (- expected, + actual):\n{}",
                debug_diff(&expected, &error)
            ),
            Ok(events) => panic!(
                "the command succeeded with {events:#?}\nbut was expected to be rejected with {expected:?}"
            ),
        }
    }

    /// Checks that the command was rejected with an error satisfying `matches`.
    ///
    /// # Panics
    /// When the command succeeded or `matches` returns false.
    #[track_caller]
    pub fn then_error_matches(self, matches: impl FnOnce(&A::Error) -> bool) {
        match self.result {
            Err(error) if matches(&error) => {}
            Err(error) => {
                panic!("the command was rejected with {error:?} ({error}), which does not match")
            }
            Ok(events) => {
                panic!("the command succeeded with {events:#?}\nbut was expected to be rejected")
            }
        }
    }
}
