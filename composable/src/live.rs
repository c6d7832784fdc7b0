//! One aggregate instance kept live in a [`Store`](crate::Store): the reducer decides commands
//! against the state, and an effect persists the events through the
//! [`AggregateRunner`]; the state changes only once the events are
//! committed.
//!
//! Commands that arrive while a load or a commit is in flight wait in the state and run in order
//! afterwards, so one store never races itself. A conflict with another writer reloads the
//! aggregate and reports the lost command in [`LiveAggregate::last`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use crate::aggregate::Aggregate;
use crate::codec::Codec;
use crate::command::CommandContext;
use crate::effect::Effect;
use crate::event_store::EventStore;
use crate::reducer::Reducer;
use crate::runner::{AggregateRunner, Loaded};
use crate::stream::{StreamId, Version};

/// The state of a hosted aggregate: the aggregate, its version, and what happened last.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveAggregate<A: Aggregate> {
    /// The aggregate as of `version`.
    pub state: A,
    /// The version of the last committed event folded into `state`.
    pub version: Version,
    /// Whether the aggregate has been loaded from the store.
    pub loaded: bool,
    /// The outcome of the last command.
    pub last: Option<CommandOutcome>,
    /// Whether a load or commit is in flight.
    pub busy: bool,
    /// Commands waiting for the load or commit in flight, in arrival order.
    pub waiting: VecDeque<A::Command>,
}

impl<A: Aggregate> Default for LiveAggregate<A> {
    fn default() -> Self {
        Self {
            state: A::default(),
            version: Version::ZERO,
            loaded: false,
            last: None,
            busy: false,
            waiting: VecDeque::new(),
        }
    }
}

/// What became of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Its events were committed; the stream is now at this version.
    Committed(Version),
    /// It decided that nothing happens.
    Unchanged,
    /// The aggregate refused it; the error's message.
    Rejected(String),
    /// Loading or committing failed (a conflict with another writer, a store failure); the
    /// error's message. The aggregate is reloaded.
    Failed(String),
}

/// What a hosted aggregate can be sent.
pub enum LiveAction<A: Aggregate> {
    /// Load (or reload) the aggregate from the store.
    Load,
    /// The load finished.
    Loaded(Loaded<A>),
    /// Decide and persist a command.
    Command(A::Command),
    /// The events of the last command were committed at `version`.
    Committed {
        /// The events, in order.
        events: Vec<A::Event>,
        /// The stream's version after them.
        version: Version,
    },
    /// Loading failed; the aggregate stays unloaded until the next `Load` or command.
    LoadFailed(Arc<dyn std::error::Error + Send + Sync>),
    /// Committing failed (typically a conflict with another writer); the aggregate reloads.
    CommitFailed(Arc<dyn std::error::Error + Send + Sync>),
}

impl<A: Aggregate> fmt::Debug for LiveAction<A>
where
    A: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Load => f.write_str("Load"),
            Self::Loaded(loaded) => f.debug_tuple("Loaded").field(loaded).finish(),
            Self::Command(command) => f.debug_tuple("Command").field(command).finish(),
            Self::Committed { events, version } => f
                .debug_struct("Committed")
                .field("events", events)
                .field("version", version)
                .finish(),
            Self::LoadFailed(error) => {
                f.debug_tuple("LoadFailed").field(&error.to_string()).finish()
            }
            Self::CommitFailed(error) => {
                f.debug_tuple("CommitFailed").field(&error.to_string()).finish()
            }
        }
    }
}

impl<A: Aggregate> PartialEq for LiveAction<A>
where
    A: PartialEq,
    A::Command: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Load, Self::Load) => true,
            (Self::Loaded(a), Self::Loaded(b)) => a == b,
            (Self::Command(a), Self::Command(b)) => a == b,
            (
                Self::Committed { events: a, version: va },
                Self::Committed { events: b, version: vb },
            ) => a == b && va == vb,
            (Self::LoadFailed(a), Self::LoadFailed(b))
            | (Self::CommitFailed(a), Self::CommitFailed(b)) => a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

/// The reducer of one hosted aggregate instance.
pub struct LiveReducer<A: Aggregate, S, C> {
    runner: Arc<AggregateRunner<A, S, C>>,
    stream: StreamId,
}

impl<A: Aggregate, S, C> fmt::Debug for LiveReducer<A, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveReducer").field("stream", &self.stream).finish_non_exhaustive()
    }
}

impl<A: Aggregate, S: EventStore, C: Codec> LiveReducer<A, S, C> {
    /// Hosts aggregate `id` through `runner`.
    ///
    /// # Errors
    /// When `id` does not make a valid stream id.
    pub fn new(
        runner: Arc<AggregateRunner<A, S, C>>,
        id: impl fmt::Display,
    ) -> Result<Self, crate::stream::StreamIdError> {
        let stream = StreamId::new(A::STREAM, id)?;
        Ok(Self { runner, stream })
    }

    fn load(&self) -> Effect<LiveAction<A>> {
        let runner = Arc::clone(&self.runner);
        let id = self.stream.id().to_owned();
        Effect::future(async move {
            match runner.load(id).await {
                Ok(loaded) => LiveAction::Loaded(loaded),
                Err(error) => LiveAction::LoadFailed(Arc::new(error)),
            }
        })
    }

    fn next_waiting(state: &mut LiveAggregate<A>) -> Effect<LiveAction<A>> {
        match state.waiting.pop_front() {
            Some(command) => Effect::send(LiveAction::Command(command)),
            None => Effect::none(),
        }
    }
}

impl<A, S, C> Reducer for LiveReducer<A, S, C>
where
    A: Aggregate + Clone,
    A::Event: Clone,
    S: EventStore,
    C: Codec,
{
    type State = LiveAggregate<A>;
    type Action = LiveAction<A>;
    type Environment = ();

    fn reduce(
        &self,
        state: &mut LiveAggregate<A>,
        action: LiveAction<A>,
        _env: &(),
    ) -> Effect<LiveAction<A>> {
        match action {
            LiveAction::Load => {
                state.busy = true;
                self.load()
            }
            LiveAction::Loaded(loaded) => {
                state.state = loaded.state;
                state.version = loaded.version;
                state.loaded = true;
                state.busy = false;
                Self::next_waiting(state)
            }
            LiveAction::Command(command) if state.busy || !state.loaded => {
                state.waiting.push_back(command);
                if state.busy {
                    Effect::none()
                } else {
                    state.busy = true;
                    self.load()
                }
            }
            LiveAction::Command(command) => {
                let events = match state.state.decide(command, self.runner.env()) {
                    Ok(events) => events,
                    Err(error) => {
                        state.last = Some(CommandOutcome::Rejected(error.to_string()));
                        return Self::next_waiting(state);
                    }
                };
                if events.is_empty() {
                    state.last = Some(CommandOutcome::Unchanged);
                    return Self::next_waiting(state);
                }
                state.busy = true;
                let mut after = state.state.clone();
                for event in &events {
                    after.apply(event);
                }
                let (runner, stream, loaded) =
                    (Arc::clone(&self.runner), self.stream.clone(), state.version);
                Effect::future(async move {
                    let context = CommandContext::new_flow();
                    match runner.commit(&stream, loaded, &events, &after, context).await {
                        Ok(append) => {
                            LiveAction::Committed { events, version: append.last_version }
                        }
                        Err(error) => LiveAction::CommitFailed(Arc::new(error)),
                    }
                })
            }
            LiveAction::Committed { events, version } => {
                for event in &events {
                    state.state.apply(event);
                }
                state.version = version;
                state.busy = false;
                state.last = Some(CommandOutcome::Committed(version));
                Self::next_waiting(state)
            }
            LiveAction::LoadFailed(error) => {
                state.last = Some(CommandOutcome::Failed(error.to_string()));
                state.busy = false;
                state.waiting.clear();
                Effect::none()
            }
            LiveAction::CommitFailed(error) => {
                state.last = Some(CommandOutcome::Failed(error.to_string()));
                state.busy = true;
                self.load()
            }
        }
    }
}
