//! The registered types, behind object-safe views: what `replay` and `events` need of an
//! aggregate, and what `saga` and `diagram` need of a saga.

use std::fmt::{Debug, Write as _};
use std::marker::PhantomData;

use composable::checkpoint::CheckpointStore;
use composable::projection::{
    Lag, Projection, ProjectionRunner, ReadStore, RebuildProgress, Scope,
};
use composable::saga::{self, Diagram, Failure, Record, SagaStatus};
use composable::{Aggregate, Codec, EventStore, RecordedEvent, Saga, StreamId};
use futures::future::{BoxFuture, LocalBoxFuture};

use super::InspectError;
use super::render::{self, ProjectionRow, Range};

/// A registered type, `A` or `G`.
pub(super) struct Typed<T>(PhantomData<fn() -> T>);

impl<T> Typed<T> {
    pub(super) fn new() -> Self {
        Self(PhantomData)
    }
}

/// What the commands need of an aggregate.
pub(super) trait AggregateView<C>: Send + Sync {
    /// Its stream category.
    fn category(&self) -> &'static str;

    /// The event, decoded and shown with `Debug`; the decode error's text when it does not
    /// decode.
    fn describe(&self, event: &RecordedEvent, codec: &C) -> Result<String, String>;

    /// `replay`'s output for `events`, the whole stream.
    fn replay(
        &self,
        stream: &StreamId,
        events: &[RecordedEvent],
        codec: &C,
        range: &Range,
    ) -> Result<String, InspectError>;
}

impl<A: Aggregate + Debug, C: Codec> AggregateView<C> for Typed<A> {
    fn category(&self) -> &'static str {
        A::STREAM
    }

    fn describe(&self, event: &RecordedEvent, codec: &C) -> Result<String, String> {
        event
            .decode::<A::Event, C>(codec)
            .map(|event| format!("{event:?}"))
            .map_err(|e| e.to_string())
    }

    fn replay(
        &self,
        stream: &StreamId,
        events: &[RecordedEvent],
        codec: &C,
        range: &Range,
    ) -> Result<String, InspectError> {
        let mut out = String::new();
        let mut state = A::default();
        let mut last = None;
        for event in events.iter().take_while(|event| range.reaches(event)) {
            let decoded: A::Event = event.decode(codec).map_err(|error| {
                InspectError::Decode(format!(
                    "`{stream}` version {} (`{}` v{}, id {}): {error}",
                    event.stream_version, event.name, event.version, event.event_id
                ))
            })?;
            let before = format!("{state:#?}");
            state.apply(&decoded);
            last = Some(event);
            if range.shows(event) {
                render::event_heading(&mut out, event);
                let _ = writeln!(out, "    {decoded:?}");
                render::changes(&mut out, &before, &format!("{state:#?}"));
            }
        }
        match last {
            None => {
                let _ = writeln!(out, "`{stream}` has no events{}", range.describe());
            }
            Some(last) => {
                let _ = writeln!(
                    out,
                    "state of `{stream}` at version {}{}:\n{state:#?}",
                    last.stream_version,
                    range.describe()
                );
            }
        }
        Ok(out)
    }
}

/// What the commands need of a saga.
pub(super) trait SagaView<S, C>: Send + Sync {
    /// Its name.
    fn name(&self) -> &'static str;

    /// `saga`'s output for instance `key`.
    fn report<'a>(
        &'a self,
        store: &'a S,
        codec: &'a C,
        key: &'a str,
    ) -> BoxFuture<'a, Result<String, InspectError>>;

    /// `diagram`'s output, with instance `key`'s path when given.
    fn diagram<'a>(
        &'a self,
        store: &'a S,
        codec: &'a C,
        key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String, InspectError>>;
}

impl<G: Saga + Debug, S: EventStore, C: Codec> SagaView<S, C> for Typed<G> {
    fn name(&self) -> &'static str {
        G::NAME
    }

    fn report<'a>(
        &'a self,
        store: &'a S,
        codec: &'a C,
        key: &'a str,
    ) -> BoxFuture<'a, Result<String, InspectError>> {
        Box::pin(async move {
            let Some(summary) = saga::load::<G, S, C>(store, codec, key).await? else {
                return Err(no_instance::<G>(key));
            };
            let history = saga::history::<G, S, C>(store, codec, key).await?;
            let mut out = String::new();
            let stream = saga::stream_id::<G>(key)?;
            let _ = writeln!(
                out,
                "saga `{}`, instance `{key}` (stream `{stream}`, version {})",
                G::NAME,
                summary.version
            );
            let status = match summary.status {
                SagaStatus::Running => "running",
                SagaStatus::Completed => "completed",
                SagaStatus::Compensated => "compensated",
            };
            let _ = writeln!(out, "status:        {status}");
            let _ = writeln!(out, "steps done:    {}", list(summary.completed.iter().copied()));
            if let Some(step) = summary.waiting {
                let timeout = G::STEPS
                    .iter()
                    .find(|candidate| candidate.name == step)
                    .and_then(|candidate| candidate.timeout);
                // The timer was armed by the last record of that step, on the runner's clock.
                let armed = history.iter().rev().find(|entry| {
                    matches!(&entry.record, Record::Handled { step: taken, timeout_armed: true, .. } if taken == step)
                });
                let due = match (timeout, armed) {
                    (Some(timeout), Some(armed)) => chrono::Duration::from_std(timeout)
                        .ok()
                        .and_then(|timeout| armed.occurred_at.checked_add_signed(timeout))
                        .map(|due| format!(", timeout due at {}", render::time(due)))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                let _ = writeln!(out, "waiting:       for the event after `{step}`{due}");
            }
            if let Some(failure) = &summary.failure {
                let why = match failure {
                    Failure::Failed { step, reason } => format!("step `{step}` failed: {reason}"),
                    Failure::TimedOut { step } => format!("the timeout after `{step}` fired"),
                    _ => format!("step `{}`", failure.step()),
                };
                let _ = writeln!(out, "failure:       {why}");
                let compensations = summary
                    .compensated()
                    .map(|(step, action)| format!("{} (undoes {})", action.name, step.name));
                let _ = writeln!(out, "compensations: {}", list(compensations));
            }
            if let Some(correlation_id) = summary.correlation_id {
                let _ = writeln!(out, "correlation:   {correlation_id}");
            }
            let _ = writeln!(out, "records:");
            for entry in &history {
                let what = match &entry.record {
                    Record::Handled { step, event, from, timeout_armed, .. } => {
                        let from = from
                            .as_ref()
                            .map(|(stream, position)| format!(" from `{stream}` at {position}"))
                            .unwrap_or_default();
                        let armed = if *timeout_armed { ", timeout armed" } else { "" };
                        format!("`{step}` took {event}{from}{armed}")
                    }
                    Record::Failed { step, reason } => format!("`{step}` failed: {reason}"),
                    Record::TimedOut { step } => format!("the timeout after `{step}` fired"),
                    other => format!("{other:?}"),
                };
                let _ = writeln!(
                    out,
                    "  v{:<3} {}  {what}",
                    entry.version,
                    render::time(entry.recorded_at)
                );
            }
            let _ = writeln!(out, "state:\n{:#?}", summary.state);
            Ok(out)
        })
    }

    fn diagram<'a>(
        &'a self,
        store: &'a S,
        codec: &'a C,
        key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String, InspectError>> {
        Box::pin(async move {
            let diagram = Diagram::of::<G>();
            let Some(key) = key else {
                return Ok(diagram.to_string());
            };
            match saga::load::<G, S, C>(store, codec, key).await? {
                Some(summary) => Ok(diagram.with_instance(&summary).to_string()),
                None => Err(no_instance::<G>(key)),
            }
        })
    }
}

fn no_instance<G: Saga>(key: &str) -> InspectError {
    InspectError::NoInstance { saga: G::NAME.to_owned(), key: key.to_owned() }
}

fn list<'a>(items: impl Iterator<Item = impl Into<std::borrow::Cow<'a, str>>>) -> String {
    let items: Vec<String> = items.map(|item| item.into().into_owned()).collect();
    if items.is_empty() { "-".to_owned() } else { items.join(", ") }
}

/// A registered projection and the read store it is kept in.
pub(super) struct Projected<P: Projection> {
    pub(super) projection: P,
    pub(super) read_store: P::Store,
}

/// What `projections` needs of a projection.
pub(super) trait ProjectionView<S, C>: Send + Sync {
    /// Its name.
    fn name(&self) -> &'static str;

    /// Where it stands against `events`' log.
    fn status<'a>(&'a self, events: &'a S) -> BoxFuture<'a, Result<ProjectionRow, InspectError>>;

    /// Empties its current version and applies `events`' whole log again. (Not `Send`: the
    /// compiler cannot prove the runner's future `Send` for every store behind a trait object,
    /// and a rebuild runs where the command line awaits it.)
    fn rebuild<'a>(
        &'a self,
        events: &'a S,
        codec: &'a C,
        progress: &'a (dyn Fn(&RebuildProgress) + Sync),
    ) -> LocalBoxFuture<'a, Result<RebuildProgress, InspectError>>;
}

impl<P, S, C> ProjectionView<S, C> for Projected<P>
where
    P: Projection + Clone,
    S: EventStore + Clone,
    C: Codec,
{
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn status<'a>(&'a self, events: &'a S) -> BoxFuture<'a, Result<ProjectionRow, InspectError>> {
        Box::pin(async move {
            let failed = |reason: String| InspectError::Projection { projection: P::NAME, reason };
            let serving = self
                .read_store
                .active_version(P::NAME)
                .await
                .map_err(|error| failed(error.to_string()))?;
            let checkpoint = Scope::of::<P>().checkpoint();
            let position = self
                .read_store
                .checkpoints()
                .load(&checkpoint)
                .await
                .map_err(|error| failed(error.to_string()))?;
            let lag = Lag::of(events, position, chrono::Utc::now()).await?;
            let dead_letters = self
                .read_store
                .dead_letters(P::NAME)
                .await
                .map_err(|error| failed(error.to_string()))?
                .len();
            Ok(ProjectionRow {
                name: P::NAME,
                version: P::VERSION,
                serving,
                position,
                lag,
                dead_letters,
            })
        })
    }

    fn rebuild<'a>(
        &'a self,
        events: &'a S,
        codec: &'a C,
        progress: &'a (dyn Fn(&RebuildProgress) + Sync),
    ) -> LocalBoxFuture<'a, Result<RebuildProgress, InspectError>> {
        Box::pin(async move {
            let runner = ProjectionRunner::new(self.projection.clone(), self.read_store.clone())
                .with_codec(codec.clone());
            runner.rebuild(events.clone(), progress).await.map_err(|error| {
                InspectError::Projection { projection: P::NAME, reason: error.to_string() }
            })
        })
    }
}
