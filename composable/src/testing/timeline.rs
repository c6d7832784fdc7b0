//! An aggregate's life, command by command, as readable text: what each command decided and
//! the state after it — for snapshot tests.

use std::fmt::{self, Debug, Write as _};

use crate::aggregate::Aggregate;

/// An aggregate's life, command by command: the events given, each command with what it decided
/// (its events, or why it was refused), and the state after each step. Its `Display` is a
/// record meant for snapshot tests (`insta::assert_snapshot!(timeline.to_string())`, reviewed
/// and updated with `cargo insta review`).
///
/// ```
/// # use composable::{aggregate, apply, command, event};
/// # use serde::{Deserialize, Serialize};
/// # #[event(name = "counter.added", version = 1)]
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// # pub struct Added { pub by: u64 }
/// # #[derive(Debug, Clone, PartialEq)] pub struct Add { pub by: u64 }
/// # #[derive(Debug, thiserror::Error)] #[error("nothing to add")] pub struct Nothing;
/// # #[derive(Debug, Default, PartialEq)] pub struct Counter { total: u64 }
/// # #[aggregate(stream = "counter")]
/// # impl Counter {
/// #     #[command] fn add(&self, c: Add) -> Result<Added, Nothing> {
/// #         if c.by == 0 { Err(Nothing) } else { Ok(Added { by: c.by }) }
/// #     }
/// #     #[apply] fn added(&mut self, e: &Added) { self.total += e.by; }
/// # }
/// use composable::testing::Timeline;
///
/// let mut timeline = Timeline::<Counter>::new(());
/// timeline.when(Add { by: 2 });
/// timeline.when(Add { by: 0 });
/// assert_eq!(timeline.state(), &Counter { total: 2 });
/// assert_eq!(
///     timeline.to_string(),
///     "when Add(Add { by: 2 })\n  → Added(Added { by: 2 })\n  state: Counter {\n      total: 2,\n  }\n\
///      when Add(Add { by: 0 })\n  refused: nothing to add\n"
/// );
/// ```
pub struct Timeline<A: Aggregate> {
    env: A::Environment,
    state: A,
    events: Vec<A::Event>,
    text: String,
}

impl<A: Aggregate + Debug> Timeline<A> {
    /// A new aggregate in `env`.
    pub fn new(env: A::Environment) -> Self {
        Self { env, state: A::default(), events: Vec::new(), text: String::new() }
    }

    /// Applies `events` as history, recording each and the state after it.
    pub fn given<E: Into<A::Event>>(&mut self, events: impl IntoIterator<Item = E>) -> &mut Self {
        for event in events {
            let event = event.into();
            let _ = writeln!(self.text, "given {event:?}");
            self.apply(event);
            self.record_state();
        }
        self
    }

    /// Decides `command` on the state so far; its events are applied. Returns what it decided.
    pub fn when(&mut self, command: impl Into<A::Command>) -> Result<&[A::Event], A::Error> {
        let command = command.into();
        let _ = writeln!(self.text, "when {command:?}");
        match self.state.decide(command, &self.env) {
            Ok(events) => {
                let from = self.events.len();
                if events.is_empty() {
                    self.text.push_str("  → no events\n");
                }
                for event in events {
                    let _ = writeln!(self.text, "  → {event:?}");
                    self.apply(event);
                }
                self.record_state();
                Ok(&self.events[from..])
            }
            Err(error) => {
                // A refusal changes nothing.
                let _ = writeln!(self.text, "  refused: {error}");
                Err(error)
            }
        }
    }

    /// The state after everything so far.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Every event so far: given, then decided.
    pub fn events(&self) -> &[A::Event] {
        &self.events
    }

    /// The environment commands are decided in.
    pub fn env(&self) -> &A::Environment {
        &self.env
    }

    fn apply(&mut self, event: A::Event) {
        self.state.apply(&event);
        self.events.push(event);
    }

    fn record_state(&mut self) {
        write_state(&mut self.text, &self.state);
    }
}

/// `  state: ` and `state`'s pretty `Debug`, indented under the step it follows: how timelines
/// (this one and [`TestStore::timeline`](super::TestStore::timeline)) show a state.
pub(super) fn write_state(text: &mut String, state: &impl Debug) {
    let state = format!("{state:#?}");
    let mut lines = state.lines();
    if let Some(first) = lines.next() {
        let _ = writeln!(text, "  state: {first}");
    }
    for line in lines {
        let _ = writeln!(text, "  {line}");
    }
}

impl<A: Aggregate + Debug> fmt::Display for Timeline<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<A: Aggregate + Debug> fmt::Debug for Timeline<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeline")
            .field("state", &self.state)
            .field("events", &self.events.len())
            .finish()
    }
}
