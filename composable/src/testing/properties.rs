//! Property-based tests of aggregates with proptest (feature `proptest`): run a generated
//! sequence of commands, check invariants after every event, and check that replaying the
//! events — encoded and decoded as a store would — rebuilds the same state. proptest shrinks a
//! failing sequence to a minimal one.

use std::fmt::Debug;

use proptest::collection::SizeRange;
use proptest::strategy::Strategy;
use proptest::test_runner::TestCaseError;

use super::Timeline;
use crate::aggregate::Aggregate;
use crate::codec::{Bincode, Codec};
use crate::event::EventSet;

/// A check of one aggregate against sequences of commands.
///
/// ```
/// # use composable::{aggregate, apply, command, event};
/// # use serde::{Deserialize, Serialize};
/// # #[event(name = "account.deposited", version = 1)]
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Deposited { pub cents: u64 }
/// # #[event(name = "account.withdrawn", version = 1)]
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Withdrawn { pub cents: u64 }
/// # #[derive(Debug, Clone, PartialEq)] pub struct Deposit { pub cents: u64 }
/// # #[derive(Debug, Clone, PartialEq)] pub struct Withdraw { pub cents: u64 }
/// # #[derive(Debug, thiserror::Error)] #[error("insufficient funds")] pub struct Insufficient;
/// # #[derive(Debug, Default, PartialEq)] pub struct Account { balance: u64 }
/// # #[aggregate(stream = "account")]
/// # impl Account {
/// #     #[command] fn deposit(&self, c: Deposit) -> Deposited { Deposited { cents: c.cents } }
/// #     #[command] fn withdraw(&self, c: Withdraw) -> Result<Withdrawn, Insufficient> {
/// #         if c.cents > self.balance { Err(Insufficient) } else { Ok(Withdrawn { cents: c.cents }) }
/// #     }
/// #     #[apply] fn deposited(&mut self, e: &Deposited) { self.balance += e.cents; }
/// #     #[apply] fn withdrawn(&mut self, e: &Withdrawn) { self.balance -= e.cents; }
/// # }
/// use composable::testing::Properties;
/// use proptest::prelude::*;
///
/// fn command() -> impl Strategy<Value = AccountCommand> {
///     prop_oneof![
///         (0..1_000u64).prop_map(|cents| AccountCommand::from(Deposit { cents })),
///         (0..1_000u64).prop_map(|cents| AccountCommand::from(Withdraw { cents })),
///     ]
/// }
///
/// proptest! {
///     // `#[test]` here in a test module; a doctest calls the function below instead.
///     fn the_balance_is_what_came_in_less_what_went_out(
///         commands in Properties::<Account>::sequences(command(), 0..40),
///     ) {
///         Properties::<Account>::new(())
///             .invariant("the balance stays below a million", |account| account.balance < 1_000_000)
///             .check(commands)?;
///     }
/// }
/// # the_balance_is_what_came_in_less_what_went_out();
/// ```
pub struct Properties<A: Aggregate, C = Bincode> {
    env: A::Environment,
    invariants: Vec<(String, Invariant<A>)>,
    codec: C,
}

type Invariant<A> = Box<dyn Fn(&A) -> bool>;

impl<A> Properties<A>
where
    A: Aggregate + Debug + PartialEq,
    A::Command: Debug,
{
    /// Commands decided in `env`, events stored with bincode (see [`with_codec`](Self::with_codec)).
    pub fn new(env: A::Environment) -> Self {
        Self { env, invariants: Vec::new(), codec: Bincode }
    }

    /// Sequences of `size` commands, each drawn from `command` (a strategy of one command type
    /// or of the aggregate's command enum): what [`check`](Self::check) takes. proptest
    /// shrinks a failing sequence by dropping commands and shrinking each.
    pub fn sequences<C>(
        command: impl Strategy<Value = C>,
        size: impl Into<SizeRange>,
    ) -> impl Strategy<Value = Vec<A::Command>>
    where
        C: Into<A::Command> + Debug,
    {
        proptest::collection::vec(command.prop_map(Into::into), size)
    }
}

impl<A, C> Properties<A, C>
where
    A: Aggregate + Debug + PartialEq,
    A::Command: Debug,
    C: Codec,
{
    /// Replays the events through `codec`, the one the application stores them with.
    #[must_use]
    pub fn with_codec<C2: Codec>(self, codec: C2) -> Properties<A, C2> {
        Properties { env: self.env, invariants: self.invariants, codec }
    }

    /// `holds` must be true of the state after every event; `name` says what it means in the
    /// failure.
    #[must_use]
    pub fn invariant(
        mut self,
        name: impl Into<String>,
        holds: impl Fn(&A) -> bool + 'static,
    ) -> Self {
        self.invariants.push((name.into(), Box::new(holds)));
        self
    }

    /// Decides `commands` in order on a new aggregate (a refused command changes nothing),
    /// checking every invariant after every event, then replays the events, each encoded and
    /// decoded with the codec as a store would, and checks the replay rebuilds the same state.
    /// Returns the timeline, for a snapshot or further checks.
    ///
    /// # Errors
    /// A [`TestCaseError`] naming the invariant broken (or the replay that differs) with the
    /// timeline so far: inside `proptest!`, `?` makes proptest shrink the commands to a minimal
    /// sequence that still fails.
    pub fn check(
        self,
        commands: impl IntoIterator<Item = impl Into<A::Command>>,
    ) -> Result<Timeline<A>, TestCaseError> {
        let Self { env, invariants, codec } = self;
        let broken = |state: &A| {
            invariants.iter().find(|(_, holds)| !holds(state)).map(|(name, _)| name.clone())
        };
        // The state checked event by event, beside the timeline (which applies a decision's
        // events together).
        let mut checked = A::default();
        if let Some(name) = broken(&checked) {
            return Err(TestCaseError::fail(format!("`{name}` does not hold of a new aggregate")));
        }
        let mut timeline = Timeline::<A>::new(env);
        for command in commands {
            let Ok(events) = timeline.when(command).map(<[A::Event]>::len) else { continue };
            let decided = timeline.events().len() - events;
            for event in &timeline.events()[decided..] {
                checked.apply(event);
                if let Some(name) = broken(&checked) {
                    return Err(TestCaseError::fail(format!(
                        "`{name}` does not hold after {event:?}:\n{checked:#?}\n\ntimeline:\n{timeline}"
                    )));
                }
            }
        }
        let mut replay = A::default();
        for event in timeline.events() {
            let stored = round_trip(event, &codec).map_err(|error| {
                TestCaseError::fail(format!("{event:?} does not survive the store: {error}"))
            })?;
            replay.apply(&stored);
        }
        if &replay != timeline.state() {
            return Err(TestCaseError::fail(format!(
                "replaying the stored events rebuilds another state:\n{}\n\ntimeline:\n{timeline}",
                super::diff::debug_diff(timeline.state(), &replay)
            )));
        }
        Ok(timeline)
    }
}

impl<A: Aggregate, C> Debug for Properties<A, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.invariants.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Properties").field("invariants", &names).finish_non_exhaustive()
    }
}

/// `event` encoded and decoded again by name and version, as a store hands it back.
fn round_trip<E: EventSet, C: Codec>(event: &E, codec: &C) -> Result<E, String> {
    let bytes = event.encode(codec).map_err(|error| error.to_string())?;
    E::decode(codec, event.event_name(), event.event_version(), &bytes)
        .map_err(|error| error.to_string())
}
