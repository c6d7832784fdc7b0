//! Inspection commands over an application's event store: `replay` a stream with the state
//! after each event, search the log (`events`), tell a saga instance's story (`saga`), draw a
//! saga (`diagram`), show where the projections stand or rebuild one (`projections`).
//!
//! [`Inspector`] knows the application's types because the application registers them;
//! [`Command`] is a clap subcommand the application mounts in its own command line (see the
//! [crate documentation](crate)). Every command writes text to the writer it is given, so its
//! output can be tested.

mod render;
mod views;

use std::io::Write;

use chrono::{DateTime, Utc};
use composable::event_store::EventStoreError;
use composable::projection::Projection;
use composable::saga::SagaError;
use composable::stream::StreamIdError;
use composable::{Aggregate, Bincode, Codec, EventStore, Saga};
use uuid::Uuid;

use views::{AggregateView, ProjectionView, SagaView, Typed};

/// One inspection command, parsed by clap.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Every event of a stream, the state after it, and what changed.
    Replay {
        /// The stream, such as `account-42`. Its category must be a registered aggregate.
        stream: String,
        /// Show events from this stream version on (the state is still rebuilt from the first).
        #[arg(long)]
        from: Option<u64>,
        /// Stop after this stream version: the state as of that version.
        #[arg(long)]
        to: Option<u64>,
        /// Stop at this time (RFC 3339): the state as it was then.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
    /// The log, filtered, as a table or as JSON lines.
    Events {
        /// Only streams of this category.
        #[arg(long)]
        category: Option<String>,
        /// Only this stream.
        #[arg(long)]
        stream: Option<String>,
        /// Only events of this stored name.
        #[arg(long)]
        name: Option<String>,
        /// Only this flow.
        #[arg(long)]
        correlation: Option<Uuid>,
        /// Only events recorded at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// Only events recorded before this time (RFC 3339).
        #[arg(long)]
        until: Option<DateTime<Utc>>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A saga instance: its status, steps, failure, pending timeout, compensations and records.
    Saga {
        /// The saga's name (`#[saga(name = ...)]`).
        name: String,
        /// The instance's key.
        key: String,
    },
    /// A saga's mermaid diagram; with a key, that instance's path drawn over it.
    Diagram {
        /// The saga's name.
        saga: String,
        /// An instance to draw.
        key: Option<String>,
    },
    /// The projections: where each stands, or rebuild one.
    #[command(subcommand)]
    Projections(Projections),
}

/// `projections status` and `projections rebuild`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Projections {
    /// Each registered projection's version, the version serving queries, its position, how
    /// far behind the log it is, and its dead letters.
    Status,
    /// Empties a projection's current version and applies the whole log again, with a progress
    /// bar. Stop the processes running that version first; to rebuild while queries are
    /// answered, raise the projection's `version` instead (it builds beside the old one).
    Rebuild {
        /// The projection's name (`#[projection(name = ...)]`).
        name: String,
    },
}

/// What went wrong running a command. Only `projections rebuild` writes, and only to the
/// projection's read store; the event store is only read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The stream's category is not a registered aggregate.
    #[error(
        "no aggregate of category `{category}` is registered (known: {known}): register it with \
         `Inspector::aggregate::<A>()`"
    )]
    UnknownCategory {
        /// The category asked for.
        category: String,
        /// The registered categories.
        known: String,
    },
    /// No saga of that name is registered.
    #[error(
        "no saga named `{name}` is registered (known: {known}): register it with \
         `Inspector::saga::<G>()`"
    )]
    UnknownSaga {
        /// The name asked for.
        name: String,
        /// The registered sagas.
        known: String,
    },
    /// No projection of that name is registered.
    #[error(
        "no projection named `{name}` is registered (known: {known}): register it with \
         `Inspector::projection(projection, read_store)`"
    )]
    UnknownProjection {
        /// The name asked for.
        name: String,
        /// The registered projections.
        known: String,
    },
    /// A projection's read store failed, or its rebuild did.
    #[error("projection `{projection}`: {reason}")]
    Projection {
        /// The projection.
        projection: &'static str,
        /// What failed.
        reason: String,
    },
    /// The saga has no instance of that key: it never started.
    #[error("saga `{saga}` has no instance `{key}`")]
    NoInstance {
        /// The saga's name.
        saga: String,
        /// The key asked for.
        key: String,
    },
    /// The text given is not a stream id.
    #[error("`{text}` is not a stream id: {source}")]
    Stream {
        /// What was given.
        text: String,
        /// Why.
        #[source]
        source: StreamIdError,
    },
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] EventStoreError),
    /// An event or a record could not be decoded.
    #[error("{0}")]
    Decode(String),
    /// Loading a saga instance failed.
    #[error(transparent)]
    Saga(#[from] SagaError),
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// The inspection commands over store `S`, whose events were written with codec `C`, knowing
/// the aggregates and sagas registered with it.
pub struct Inspector<S, C = Bincode> {
    store: S,
    codec: C,
    aggregates: Vec<Box<dyn AggregateView<C>>>,
    sagas: Vec<Box<dyn SagaView<S, C>>>,
    projections: Vec<Box<dyn ProjectionView<S, C>>>,
}

impl<S: EventStore> Inspector<S> {
    /// Inspects `store`, whose payloads are bincode (the default codec).
    pub fn new(store: S) -> Self {
        Self::with_codec(store, Bincode)
    }
}

impl<S: EventStore, C: Codec> Inspector<S, C> {
    /// Inspects `store`, whose payloads were written with `codec`.
    pub fn with_codec(store: S, codec: C) -> Self {
        Self { store, codec, aggregates: Vec::new(), sagas: Vec::new(), projections: Vec::new() }
    }

    /// Registers aggregate `A`: its streams can be replayed and its events are shown decoded.
    #[must_use]
    pub fn aggregate<A>(mut self) -> Self
    where
        A: Aggregate + std::fmt::Debug,
    {
        self.aggregates.push(Box::new(Typed::<A>::new()));
        self
    }

    /// Registers saga `G`: its instances can be inspected and it can be drawn.
    #[must_use]
    pub fn saga<G>(mut self) -> Self
    where
        G: Saga + std::fmt::Debug,
    {
        self.sagas.push(Box::new(Typed::<G>::new()));
        self
    }

    /// Registers `projection`, kept in `read_store`: its status can be shown and it can be
    /// rebuilt.
    #[must_use]
    pub fn projection<P>(mut self, projection: P, read_store: P::Store) -> Self
    where
        P: Projection + Clone,
        S: Clone,
    {
        self.projections.push(Box::new(views::Projected { projection, read_store }));
        self
    }

    /// Runs `command`, writing its output to `out`. Await it where the command line runs (the
    /// future of a rebuild is not `Send`, so it is not for `tokio::spawn`).
    ///
    /// # Errors
    /// See [`InspectError`]: an unknown stream category or saga, a store that fails, an event
    /// that does not decode, an output that cannot be written.
    pub async fn run(&self, command: Command, out: &mut impl Write) -> Result<(), InspectError> {
        let text = match command {
            Command::Replay { stream, from, to, at } => {
                let range = render::Range { from, to, at };
                self.replay(&stream, range).await?
            }
            Command::Events { category, stream, name, correlation, since, until, limit, json } => {
                let filter = render::Filter { category, stream, name, correlation, since, until };
                self.events(&filter, limit, json).await?
            }
            Command::Saga { name, key } => {
                self.saga_named(&name)?.report(&self.store, &self.codec, &key).await?
            }
            Command::Diagram { saga, key } => {
                self.saga_named(&saga)?.diagram(&self.store, &self.codec, key.as_deref()).await?
            }
            Command::Projections(Projections::Status) => {
                let mut rows = Vec::new();
                for view in &self.projections {
                    rows.push(view.status(&self.store).await?);
                }
                render::projections(&rows)
            }
            Command::Projections(Projections::Rebuild { name }) => {
                let view = self.projection_named(&name)?;
                let bar = indicatif::ProgressBar::new(0).with_style(render::progress_style());
                let done = view
                    .rebuild(&self.store, &self.codec, &|progress| {
                        bar.set_length(progress.total);
                        bar.set_position(progress.done);
                    })
                    .await;
                bar.finish_and_clear();
                render::rebuilt(&name, &done?)
            }
        };
        out.write_all(text.as_bytes())?;
        Ok(())
    }

    async fn replay(&self, stream: &str, range: render::Range) -> Result<String, InspectError> {
        let stream = composable::StreamId::parse(stream)
            .map_err(|source| InspectError::Stream { text: stream.to_owned(), source })?;
        let view = self.aggregate_of(stream.category())?;
        let events = render::read_stream(&self.store, &stream).await?;
        view.replay(&stream, &events, &self.codec, &range)
    }

    async fn events(
        &self,
        filter: &render::Filter,
        limit: usize,
        json: bool,
    ) -> Result<String, InspectError> {
        let events = render::search(&self.store, filter, limit).await?;
        let describe = |event: &composable::RecordedEvent| {
            self.aggregates
                .iter()
                .find(|view| view.category() == event.stream_id.category())
                .map(|view| view.describe(event, &self.codec))
        };
        render::events(&events, describe, json)
    }

    fn aggregate_of(&self, category: &str) -> Result<&dyn AggregateView<C>, InspectError> {
        self.aggregates
            .iter()
            .find(|view| view.category() == category)
            .map(|view| &**view)
            .ok_or_else(|| InspectError::UnknownCategory {
                category: category.to_owned(),
                known: known(self.aggregates.iter().map(|view| view.category())),
            })
    }

    fn projection_named(&self, name: &str) -> Result<&dyn ProjectionView<S, C>, InspectError> {
        let found = self.projections.iter().find(|view| view.name() == name);
        found.map(|view| &**view).ok_or_else(|| InspectError::UnknownProjection {
            name: name.to_owned(),
            known: known(self.projections.iter().map(|view| view.name())),
        })
    }

    fn saga_named(&self, name: &str) -> Result<&dyn SagaView<S, C>, InspectError> {
        self.sagas.iter().find(|view| view.name() == name).map(|view| &**view).ok_or_else(|| {
            InspectError::UnknownSaga {
                name: name.to_owned(),
                known: known(self.sagas.iter().map(|view| view.name())),
            }
        })
    }
}

impl<S, C> std::fmt::Debug for Inspector<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector")
            .field("aggregates", &self.aggregates.iter().map(|v| v.category()).collect::<Vec<_>>())
            .field("sagas", &self.sagas.iter().map(|v| v.name()).collect::<Vec<_>>())
            .field("projections", &self.projections.iter().map(|v| v.name()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn known<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.map(|name| format!("`{name}`")).collect();
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}
