//! Runs commands against event-sourced aggregates: load, decide, append, snapshot.
//!
//! [`AggregateRunner::execute`] rebuilds the aggregate from its latest usable snapshot plus the
//! events after it, asks [`Aggregate::decide`], and appends the resulting events expecting the
//! version it loaded. A concurrent writer makes that append fail with a typed conflict; a
//! retry [`Backoff`] (off by default) reloads and decides again. Every `SNAPSHOT_EVERY` events a
//! snapshot is written; snapshots of another state schema or format are ignored, never misread.

mod cache;

use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::sync::Arc;

use futures::TryStreamExt;
use tracing::Instrument;
use tracing::field::{Empty, display};
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::backoff::Backoff;
use crate::clock::{Clock, SystemClock};
use crate::codec::{Bincode, Codec, CodecError};
use crate::command::{self, CommandContext};
use crate::consistency::ReadToken;
use crate::envelope::{EventMetadata, NewEvent, RecordedEvent, Snapshot, StoredEvent};
use crate::event::{DecodeError, EventSet};
use crate::event_store::{AppendResult, EventStore, EventStoreError, StreamPart};
use crate::metrics;
use crate::stream::{ExpectedVersion, Position, StreamId, StreamIdError, Version};
use cache::StateCache;

/// Why a command did not produce committed events.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The aggregate refused the command.
    #[error("command rejected: {0}")]
    Rejected(#[source] E),
    /// Another writer appended to the stream first, on every attempt the retry policy allowed.
    #[error(
        "stream `{stream}` changed concurrently: loaded version {loaded}, found {actual} ({attempts} attempt(s))"
    )]
    Conflict {
        /// The aggregate's stream.
        stream: StreamId,
        /// The version the last attempt decided on.
        loaded: Version,
        /// The version the store reported.
        actual: Version,
        /// How many times the command was decided.
        attempts: u32,
    },
    /// A stored event could not be decoded: the stream, version and event say which.
    #[error(transparent)]
    Decode(Box<StoredEventError>),
    /// A new event could not be encoded.
    #[error("cannot encode event `{name}` for `{stream}`: {source}")]
    Encode {
        /// The aggregate's stream.
        stream: StreamId,
        /// The event's name.
        name: &'static str,
        /// What the codec said.
        #[source]
        source: CodecError,
    },
    /// The aggregate id does not make a valid stream id.
    #[error("invalid aggregate id: {0}")]
    InvalidId(#[from] StreamIdError),
    /// The event store failed.
    #[error(transparent)]
    Store(EventStoreError),
}

/// A stored event that could not be decoded, and where it is.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot decode event `{name}` v{event_version} at `{stream}` version {stream_version} (id {event_id}): {source}"
)]
pub struct StoredEventError {
    /// The event's stream.
    pub stream: StreamId,
    /// The event's version in the stream.
    pub stream_version: Version,
    /// The event's id.
    pub event_id: Uuid,
    /// The stored event name.
    pub name: String,
    /// The stored event version.
    pub event_version: u16,
    /// Why decoding failed.
    #[source]
    pub source: DecodeError,
}

/// An aggregate rebuilt from its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The state after every event.
    pub state: A,
    /// The version of the last event folded in.
    pub version: Version,
    /// The version of the snapshot the load started from, if one was used.
    pub snapshot: Option<Version>,
}

/// What a successful command did.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed<A: Aggregate> {
    /// The events appended, in order (empty when the command decided nothing happens).
    pub events: Vec<A::Event>,
    /// The state after the events.
    pub state: A,
    /// The stream's version after the append.
    pub version: Version,
    /// Where the store put the events; `None` when there were none.
    pub append: Option<AppendResult>,
    /// The command carried a [command id](CommandContext::command_id) whose events were
    /// already stored: it took effect on an earlier delivery, nothing was appended now, and
    /// `events` is empty. `state` and `version` are the aggregate's current ones.
    pub duplicate: bool,
    /// What a read must have reached to see the command's effect ([read-your-writes](crate::consistency)):
    /// the position of its last event, or for a duplicate the head of the log when it was
    /// answered (the earlier delivery's events are behind it). `None` when nothing happened.
    pub token: Option<ReadToken>,
}

impl<A: Aggregate> Executed<A> {
    fn already_done(state: A, version: Version, head: Position) -> Self {
        Self {
            events: Vec::new(),
            state,
            version,
            append: None,
            duplicate: true,
            token: Some(ReadToken::new(head)),
        }
    }
}

/// Executes commands against aggregates of type `A` stored in `S`, encoding with `C`.
pub struct AggregateRunner<A: Aggregate, S, C = Bincode> {
    store: S,
    codec: C,
    env: A::Environment,
    clock: Arc<dyn Clock>,
    retry: Backoff,
    cache: Option<StateCache<A>>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, S, C> fmt::Debug for AggregateRunner<A, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateRunner")
            .field("aggregate", &A::STREAM)
            .field("retry", &self.retry)
            .field("cache", &self.cache.as_ref().map(StateCache::capacity))
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate, S: EventStore> AggregateRunner<A, S, Bincode> {
    /// A runner with the default codec, the system clock, and no retries.
    pub fn new(store: S, env: A::Environment) -> Self {
        Self {
            store,
            codec: Bincode,
            env,
            clock: Arc::new(SystemClock),
            retry: Backoff::NONE,
            cache: None,
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate, S: EventStore, C: Codec> AggregateRunner<A, S, C> {
    /// Uses `codec` for new events and snapshots (stored rows keep their own format).
    pub fn with_codec<C2: Codec>(self, codec: C2) -> AggregateRunner<A, S, C2> {
        AggregateRunner {
            store: self.store,
            codec,
            env: self.env,
            clock: self.clock,
            retry: self.retry,
            cache: self.cache,
            aggregate: PhantomData,
        }
    }

    /// Stamps events and waits for backoffs on `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Decides again after a conflict, as `retry` allows.
    #[must_use]
    pub fn with_retry(mut self, retry: Backoff) -> Self {
        self.retry = retry;
        self
    }

    /// Keeps the state after each command of the last `capacity` streams it ran (least recently
    /// used dropped first), and decides the next command on a kept stream without loading it:
    /// one round trip, the append, instead of a read and the append.
    ///
    /// The append still expects the version the state was kept at, so correctness rests on the
    /// store's version check as without a cache. When the stream has moved on since (another
    /// process or runner wrote to it), the append is refused, the state is dropped, and the
    /// command is loaded and decided again at once; this does not count as an attempt of the
    /// [retry policy](Self::with_retry), which still governs conflicts with a fresh load. A
    /// command refused, or deciding nothing, on a kept state is answered only after one read
    /// of the stream's version shows the state was current. So a stream written by one runner
    /// at a time saves a load per command, and one written by many costs a refused append per
    /// command that finds its state stale. Off unless switched on, since it needs `A: Clone`
    /// and holds states in memory. `docs/adr/0015-hot-aggregate-cache.md` has the reasoning.
    #[must_use]
    pub fn with_cache(mut self, capacity: NonZeroUsize) -> Self
    where
        A: Clone,
    {
        self.cache = Some(StateCache::new(capacity));
        self
    }

    /// The event store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The environment command handlers read.
    pub fn env(&self) -> &A::Environment {
        &self.env
    }

    /// The stream of aggregate `id`.
    ///
    /// # Errors
    /// When `id` is empty.
    pub fn stream_id(&self, id: impl fmt::Display) -> Result<StreamId, CommandError<A::Error>> {
        Ok(StreamId::new(A::STREAM, id)?)
    }

    /// Rebuilds aggregate `id` from its latest usable snapshot and the events after it.
    ///
    /// # Errors
    /// When the store fails or a stored event cannot be decoded.
    pub async fn load(&self, id: impl fmt::Display) -> Result<Loaded<A>, CommandError<A::Error>> {
        let stream = self.stream_id(id)?;
        self.load_stream(&stream).await
    }

    async fn load_stream(&self, stream: &StreamId) -> Result<Loaded<A>, CommandError<A::Error>> {
        if A::SNAPSHOT_EVERY.is_some()
            && let Some(loaded) = self.load_from_snapshot(stream).await?
        {
            return Ok(loaded);
        }
        let mut loaded = Loaded { state: A::default(), version: Version::ZERO, snapshot: None };
        let mut events = self.store.read_stream_with(stream, Version::ZERO, self.reader(stream));
        while let Some(decoded) = events.try_next().await.map_err(CommandError::Store)? {
            let (version, event) = decoded?;
            loaded.state.apply(&event);
            loaded.version = version;
        }
        Ok(loaded)
    }

    /// The state from the stream's snapshot of this state schema and codec, and the events
    /// after it, in one read; `None` when the snapshot cannot be decoded, so the caller
    /// replays the stream instead.
    async fn load_from_snapshot(
        &self,
        stream: &StreamId,
    ) -> Result<Option<Loaded<A>>, CommandError<A::Error>> {
        let mut loaded = Loaded { state: A::default(), version: Version::ZERO, snapshot: None };
        let mut parts = self.store.read_stream_from_snapshot(
            stream,
            A::SNAPSHOT_SCHEMA,
            self.codec.format(),
            self.reader(stream),
        );
        while let Some(part) = parts.try_next().await.map_err(CommandError::Store)? {
            match part {
                StreamPart::Snapshot(snapshot) => {
                    match A::decode_snapshot(&self.codec, &snapshot.state) {
                        Some(Ok(state)) => {
                            loaded.state = state;
                            loaded.version = snapshot.version;
                            loaded.snapshot = Some(snapshot.version);
                        }
                        Some(Err(error)) => {
                            tracing::warn!(%stream, %error, "ignoring an unreadable snapshot; rebuilding from events");
                            return Ok(None);
                        }
                        None => return Ok(None),
                    }
                }
                StreamPart::Event(decoded) => {
                    let (version, event) = decoded?;
                    loaded.state.apply(&event);
                    loaded.version = version;
                }
            }
        }
        Ok(Some(loaded))
    }

    /// How a load reads each stored event of `stream`: its version and the decoded event.
    fn reader<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> impl FnMut(StoredEvent<'_>) -> Result<(Version, A::Event), CommandError<A::Error>> + Send + 'a
    {
        move |event| {
            decode_stored::<A, C>(&self.codec, stream, event)
                .map(|decoded| (event.stream_version, decoded))
        }
    }

    /// Executes `command` on aggregate `id` in a new flow.
    ///
    /// # Errors
    /// See [`CommandError`].
    pub async fn execute(
        &self,
        id: impl fmt::Display,
        command: impl Into<A::Command>,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        self.execute_in(id, command, CommandContext::new_flow()).await
    }

    /// Executes `command` on aggregate `id` as part of the flow `context`: the events carry its
    /// correlation id and name the command as their cause.
    ///
    /// With a [command id](CommandContext::command_id) the command takes effect at most once,
    /// however often it is delivered. Its events get ids derived from the command id
    /// ([`crate::command::event_id`]); when the aggregate refuses the command, or the append
    /// collides with stored event ids or with another writer, the runner looks up the id of the
    /// command's first event, and if that event is stored in this aggregate's stream, the
    /// command took effect on an earlier delivery: the result is `Ok` with
    /// [`Executed::duplicate`] set and nothing appended. The lookup happens only on those paths,
    /// so an accepted command costs the same with an id as without. A command that decided no
    /// events leaves no trace, so a repeat of it is decided afresh.
    ///
    /// ```
    /// # use composable::{aggregate, apply, command, event};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Default)] pub struct Payment { charged: bool }
    /// # #[derive(Debug, Clone, PartialEq)] pub struct Charge;
    /// # #[event(name = "payment.charged", version = 1)]
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Charged;
    /// # #[derive(Debug, thiserror::Error)] #[error("already charged")] pub struct Twice;
    /// # #[aggregate(stream = "payment")]
    /// # impl Payment {
    /// #     #[command] fn charge(&self, _c: Charge) -> Result<Charged, Twice> {
    /// #         if self.charged { Err(Twice) } else { Ok(Charged) }
    /// #     }
    /// #     #[apply] fn charged(&mut self, _e: &Charged) { self.charged = true }
    /// # }
    /// use composable::{AggregateRunner, CommandContext, InMemoryEventStore, CommandError};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let payments = AggregateRunner::<Payment, _>::new(InMemoryEventStore::new(), ());
    /// let charge = CommandContext::new_flow().with_command_id(uuid::Uuid::now_v7());
    /// let first = payments.execute_in("o1", Charge, charge).await?;
    /// let again = payments.execute_in("o1", Charge, charge).await?;
    /// assert!(!first.duplicate && again.duplicate && again.events.is_empty());
    /// // Without the id, the same command is a new one, and refused.
    /// let other = CommandContext::new_flow();
    /// assert!(matches!(payments.execute_in("o1", Charge, other).await, Err(CommandError::Rejected(_))));
    /// # Ok::<(), CommandError<Twice>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// See [`CommandError`].
    pub async fn execute_in(
        &self,
        id: impl fmt::Display,
        command: impl Into<A::Command>,
        context: CommandContext,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        let stream = self.stream_id(id)?;
        let command = command.into();
        let span = tracing::info_span!(
            "command",
            aggregate = A::STREAM,
            stream = %stream,
            command = A::command_name(&command),
            correlation_id = %context.correlation_id,
            causation_id = %context.causation_id,
            command_id = Empty,
            attempts = Empty,
            outcome = Empty,
        );
        if let Some(command_id) = context.command_id {
            span.record("command_id", display(command_id));
        }
        let recorded = span.clone();
        let took = metrics::Stopwatch::start();
        // By value: a command held by reference across the awaits would have to be `Sync`.
        let (result, attempts) = async move {
            let mut attempt = 1;
            loop {
                match self.attempt(&stream, command.clone(), context).await {
                    Err(CommandError::Conflict { loaded, actual, .. })
                        if self.retry.allows(attempt + 1) =>
                    {
                        tracing::debug!(%loaded, %actual, attempt, "conflict; deciding again");
                        attempt += 1;
                        self.retry.wait_before(attempt, &*self.clock).await;
                    }
                    Err(CommandError::Conflict { stream, loaded, actual, .. }) => {
                        let conflict =
                            CommandError::Conflict { stream, loaded, actual, attempts: attempt };
                        return (Err(conflict), attempt);
                    }
                    other => return (other, attempt),
                }
            }
        }
        .instrument(span)
        .await;
        let outcome = outcome(&result);
        recorded.record("attempts", attempts);
        recorded.record("outcome", outcome);
        let conflicts = attempts - 1 + u32::from(outcome == "conflict");
        metrics::command_finished(A::STREAM, outcome, conflicts, attempts - 1, took);
        result
    }

    /// One attempt of the retry policy: the command decided on the cached state when there is
    /// one (see [`Self::with_cache`]), and on a fresh load when there is none or it was stale.
    async fn attempt(
        &self,
        stream: &StreamId,
        command: A::Command,
        context: CommandContext,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        let cached = self.cache.as_ref().and_then(|cache| cache.get(stream));
        if let Some((state, version)) = cached {
            match self
                .decide_and_commit(stream, state, version, command.clone(), context, true)
                .await
            {
                Decided::Done(result) => return result,
                Decided::Stale => {
                    tracing::debug!(%version, "the cached state was stale; loading the stream");
                }
            }
        }
        let Loaded { state, version, .. } =
            self.load_stream(stream).instrument(tracing::info_span!("load")).await?;
        match self.decide_and_commit(stream, state, version, command, context, false).await {
            Decided::Done(result) => result,
            // Only a cached state can be stale.
            Decided::Stale => Err(CommandError::Conflict {
                stream: stream.clone(),
                loaded: version,
                actual: version,
                attempts: 1,
            }),
        }
    }

    /// Decides `command` on `state` at `version` and appends what it decided. With `cached`,
    /// the state came from the cache, and an outcome that may rest on it being stale — a
    /// conflict, a refusal, nothing decided — is checked against the store and, when it was
    /// stale, is [`Decided::Stale`] instead.
    async fn decide_and_commit(
        &self,
        stream: &StreamId,
        mut state: A,
        version: Version,
        command: A::Command,
        context: CommandContext,
        cached: bool,
    ) -> Decided<A> {
        let decided = tracing::info_span!("decide", events = Empty, cached).in_scope(|| {
            let decided = state.decide(command, &self.env);
            if let Ok(events) = &decided {
                tracing::Span::current().record("events", events.len());
            }
            decided
        });
        let events = match decided {
            Ok(events) if !events.is_empty() => events,
            decided => {
                if cached {
                    match self.is_current(stream, version).await {
                        Ok(true) => {}
                        Ok(false) => return self.stale(stream, version),
                        Err(error) => return Decided::Done(Err(error)),
                    }
                }
                return Decided::Done(match decided {
                    Ok(events) => Ok(Executed {
                        events,
                        state,
                        version,
                        append: None,
                        duplicate: false,
                        token: None,
                    }),
                    Err(error) => match self.took_effect(stream, context).await {
                        Ok(true) => self
                            .store
                            .head()
                            .await
                            .map_err(CommandError::Store)
                            .map(|head| Executed::already_done(state, version, head)),
                        Ok(false) => Err(CommandError::Rejected(error)),
                        Err(error) => Err(error),
                    },
                });
            }
        };
        for event in &events {
            state.apply(event);
        }
        Decided::Done(match self.commit(stream, version, &events, &state, context).await {
            Ok(append) => {
                if let Some(cache) = &self.cache {
                    cache.put(stream, &state, append.last_version);
                }
                Ok(Executed {
                    events,
                    state,
                    version: append.last_version,
                    token: Some(ReadToken::new(append.last_position)),
                    append: Some(append),
                    duplicate: false,
                })
            }
            Err(
                error @ (CommandError::Conflict { .. }
                | CommandError::Store(EventStoreError::DuplicateEventId { .. })),
            ) => {
                if let Some(cache) = &self.cache {
                    cache.forget(stream, version);
                }
                match self.took_effect(stream, context).await {
                    Ok(true) => self.already_done(stream).await,
                    Ok(false) if cached && matches!(error, CommandError::Conflict { .. }) => {
                        return Decided::Stale;
                    }
                    Ok(false) => Err(error),
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(error),
        })
    }

    /// Whether `stream` is still at `version`: one read of its version.
    async fn is_current(
        &self,
        stream: &StreamId,
        version: Version,
    ) -> Result<bool, CommandError<A::Error>> {
        let actual = self.store.stream_version(stream).await.map_err(CommandError::Store)?;
        Ok(actual == version)
    }

    fn stale(&self, stream: &StreamId, version: Version) -> Decided<A> {
        if let Some(cache) = &self.cache {
            cache.forget(stream, version);
        }
        Decided::Stale
    }

    /// The answer to a command that took effect on an earlier delivery: the current state.
    async fn already_done(&self, stream: &StreamId) -> Result<Executed<A>, CommandError<A::Error>> {
        let Loaded { state, version, .. } = self.load_stream(stream).await?;
        let head = self.store.head().await.map_err(CommandError::Store)?;
        Ok(Executed::already_done(state, version, head))
    }

    /// Whether the command of `context` already appended its events to `stream`: its first
    /// event's id is stored there. Always `false` without a command id.
    async fn took_effect(
        &self,
        stream: &StreamId,
        context: CommandContext,
    ) -> Result<bool, CommandError<A::Error>> {
        let Some(command_id) = context.command_id else {
            return Ok(false);
        };
        let first = command::event_id(command_id, 0);
        let stored = self.store.event(first).await.map_err(CommandError::Store)?;
        Ok(stored.is_some_and(|event| {
            if event.stream_id != *stream {
                tracing::warn!(
                    %stream, command = %command_id, found_in = %event.stream_id,
                    "a command id was reused for another aggregate; deciding the command as new"
                );
            }
            event.stream_id == *stream
        }))
    }

    /// Appends `events`, decided on the aggregate at version `loaded`, as part of the flow
    /// `context` (with ids derived from its command id, when it has one); `state_after` is the state with the events applied, snapshotted when the
    /// append crosses a multiple of `SNAPSHOT_EVERY`.
    ///
    /// # Errors
    /// [`CommandError::Conflict`] when the stream moved past `loaded`, and encoding or store
    /// failures.
    pub async fn commit(
        &self,
        stream: &StreamId,
        loaded: Version,
        events: &[A::Event],
        state_after: &A,
        context: CommandContext,
    ) -> Result<AppendResult, CommandError<A::Error>> {
        let metadata = EventMetadata::caused_by(
            context.correlation_id,
            context.causation_id,
            self.clock.now(),
        )
        .in_current_trace();
        let new_events = events
            .iter()
            .enumerate()
            .map(|(index, event)| {
                let mut new =
                    NewEvent::encode(event, &self.codec, metadata.clone()).map_err(|source| {
                        CommandError::Encode {
                            stream: stream.clone(),
                            name: event.event_name(),
                            source,
                        }
                    })?;
                if let Some(command_id) = context.command_id {
                    new.event_id = command::event_id(command_id, index);
                }
                Ok(new)
            })
            .collect::<Result<Vec<_>, CommandError<A::Error>>>()?;
        let bytes = new_events.iter().map(|event| event.payload.len()).sum();
        let appended = self
            .store
            .append(stream, ExpectedVersion::Exact(loaded), new_events)
            .instrument(tracing::info_span!("append", events = events.len(), expected = %loaded))
            .await;
        let append = match appended {
            Ok(append) => append,
            Err(EventStoreError::Conflict { actual, .. }) => {
                return Err(CommandError::Conflict {
                    stream: stream.clone(),
                    loaded,
                    actual,
                    attempts: 1,
                });
            }
            Err(error) => return Err(CommandError::Store(error)),
        };
        metrics::appended(A::STREAM, events.len(), bytes);
        self.maybe_snapshot(stream, state_after, loaded, append.last_version).await;
        Ok(append)
    }

    /// Writes a snapshot when the append crossed a multiple of `SNAPSHOT_EVERY`. The events are
    /// already committed, so a failed snapshot is logged, not returned: the next load replays a
    /// few more events.
    async fn maybe_snapshot(&self, stream: &StreamId, state: &A, before: Version, after: Version) {
        let Some(every) = A::SNAPSHOT_EVERY else {
            return;
        };
        if before.get() / every.get() == after.get() / every.get() {
            return;
        }
        let span = tracing::info_span!("snapshot", version = %after);
        let encoded = match span.in_scope(|| A::encode_snapshot(state, &self.codec)) {
            Some(Ok(bytes)) => bytes,
            Some(Err(error)) => {
                tracing::warn!(%stream, %error, "could not encode a snapshot");
                metrics::snapshot(A::STREAM, false);
                return;
            }
            None => return,
        };
        let snapshot = Snapshot {
            stream_id: stream.clone(),
            version: after,
            schema_version: A::SNAPSHOT_SCHEMA,
            format: self.codec.format().to_owned(),
            state: encoded,
            taken_at: self.clock.now(),
        };
        let saved = self.store.save_snapshot(snapshot).instrument(span).await;
        if let Err(error) = &saved {
            tracing::warn!(%stream, %error, "could not save a snapshot");
        }
        metrics::snapshot(A::STREAM, saved.is_ok());
    }
}

/// What deciding a command on a state came to.
enum Decided<A: Aggregate> {
    /// The command's outcome.
    Done(Result<Executed<A>, CommandError<A::Error>>),
    /// The state came from the cache and the stream has moved on: decide again on a load.
    Stale,
}

/// How a command ended, as its span records it.
fn outcome<A: Aggregate>(result: &Result<Executed<A>, CommandError<A::Error>>) -> &'static str {
    match result {
        Ok(executed) if executed.duplicate => "duplicate",
        Ok(_) => "accepted",
        Err(CommandError::Rejected(_)) => "rejected",
        Err(CommandError::Conflict { .. }) => "conflict",
        Err(_) => "failed",
    }
}

fn decode<A: Aggregate, C: Codec>(
    codec: &C,
    recorded: &RecordedEvent,
) -> Result<A::Event, CommandError<A::Error>> {
    decode_stored::<A, C>(codec, &recorded.stream_id, recorded.as_stored())
}

fn decode_stored<A: Aggregate, C: Codec>(
    codec: &C,
    stream: &StreamId,
    event: StoredEvent<'_>,
) -> Result<A::Event, CommandError<A::Error>> {
    event.decode::<A::Event, C>(codec).map_err(|source| {
        CommandError::Decode(Box::new(StoredEventError {
            stream: stream.clone(),
            stream_version: event.stream_version,
            event_id: event.event_id,
            name: event.name.to_owned(),
            event_version: event.version,
            source,
        }))
    })
}

/// Decodes a stream's recorded events into the aggregate's events, for tools and tests.
///
/// # Errors
/// The first event that cannot be decoded.
pub fn decode_events<A: Aggregate, C: Codec>(
    codec: &C,
    recorded: &[RecordedEvent],
) -> Result<Vec<A::Event>, CommandError<A::Error>> {
    recorded.iter().map(|r| decode::<A, C>(codec, r)).collect()
}
