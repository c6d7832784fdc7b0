//! Read models: projections of the committed events into stores that answer queries.
//!
//! A [`Projection`] names the events it handles ([`Projection::Event`], an [`EventSet`]) and
//! applies each one to a batch of its [`ReadStore`]. A [`ProjectionRunner`] is the projection's
//! [`EventHandler`]: run by a
//! [`LogConsumer`] (the host does it, see
//! [`AppBuilder::projection`](crate::host::AppBuilder::projection)), it opens one batch per batch
//! of the log, decodes the events the projection handles (upcast to their newest version),
//! applies them, and commits the batch together with the projection's checkpoint, kept in the
//! read store itself — only if the checkpoint is still where the batch began. So each event takes
//! effect once, crashes included, and of two processes running one projection only one moves it.
//! Events it does not handle move the checkpoint too, so a [read-your-writes](crate::consistency)
//! wait never hangs on a projection that ignores a command's events.
//!
//! Sagas and command handlers never read projections: they keep their own state and read the
//! event store. Projections serve queries — screens, reports, search — where a lag of
//! milliseconds is acceptable, and a query that must see a command's effect waits for its token.
//!
//! [`InMemoryDocuments`] is the in-memory read store: typed documents by collection and key.
//!
//! ```
//! use composable::checkpoint::InMemoryCheckpointStore;
//! use composable::consumer::LogConsumer;
//! use composable::projection::{DocumentBatch, InMemoryDocuments, Projection, ProjectionRunner};
//! use composable::{EventStore, InMemoryEventStore, RecordedEvent, service};
//! # use composable::{aggregate, apply, command, event, AggregateRunner};
//! # use serde::{Deserialize, Serialize};
//! # #[event(name = "order.placed", version = 1)]
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! # pub struct Placed { pub customer: String }
//! # #[derive(Debug, Clone, PartialEq)] pub struct Place { pub customer: String }
//! # #[derive(Debug, Default)] pub struct Order;
//! # #[aggregate(stream = "order")]
//! # impl Order {
//! #     #[command] fn place(&self, c: Place) -> Placed { Placed { customer: c.customer } }
//! #     #[apply] fn placed(&mut self, _e: &Placed) {}
//! # }
//!
//! /// Orders per customer.
//! struct OrdersByCustomer;
//!
//! impl Projection for OrdersByCustomer {
//!     const NAME: &'static str = "orders_by_customer";
//!     type Event = OrderEvent;
//!     type Store = InMemoryDocuments;
//!     type Error = composable::projection::DocumentError;
//!
//!     async fn apply(
//!         &self,
//!         batch: &mut DocumentBatch,
//!         event: OrderEvent,
//!         _envelope: &RecordedEvent,
//!     ) -> Result<(), Self::Error> {
//!         let OrderEvent::Placed(placed) = event;
//!         let count: u64 = batch.get("orders", &placed.customer)?.unwrap_or(0);
//!         batch.put("orders", &placed.customer, &(count + 1))
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let store = InMemoryEventStore::new();
//! let read = InMemoryDocuments::new();
//! let view = service::spawn(ProjectionRunner::new(OrdersByCustomer, read.clone()).consumer(store.clone()));
//! let orders = AggregateRunner::<Order, _>::new(store.clone(), ());
//! let placed = orders.execute("o1", Place { customer: "ada".into() }).await?;
//! view.reached(placed.token.expect("appended"), std::time::Duration::from_secs(5)).await?;
//! assert_eq!(read.get::<u64>("orders", "ada")?, Some(1));
//! view.stop().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod bus;
mod cached;
mod dead_letter;
mod memory;
mod rebuild;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;

use tracing::Instrument;
use uuid::Uuid;

use crate::breaker::{BreakerError, CircuitBreaker};
use crate::checkpoint::CheckpointStore;
use crate::codec::{Bincode, Codec};
use crate::consumer::{Checkpoint, EventHandler, LogConsumer, Saved};
use crate::envelope::RecordedEvent;
use crate::event::{DecodeError, EventSet};
use crate::event_store::EventStore;
use crate::metrics;
use crate::stream::Position;

use bus::Fresh;
pub use bus::{Guarded, ProjectionFromBus, StreamGuards};
pub use cached::{
    CacheStats, Cached, CachedBatch, CachedError, DocumentCache, DocumentStore, InMemoryCache,
};
pub use dead_letter::{DeadLetter, OnFailure, Replayed};
pub use memory::{
    DocumentBatch, DocumentCheckpoints, DocumentError, InMemoryDocuments, collection_name,
    decode_document, encode_document,
};
pub use rebuild::RebuildProgress;
pub use status::{Lag, ProjectionState, ProjectionStatus};

/// A read model kept up to date from committed events. Handlers are applied in log order, within
/// a batch of the projection's store.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a projection",
    note = "implement `composable::projection::Projection`: a name, the events it handles, its store and `apply`"
)]
pub trait Projection: Send + Sync + 'static {
    /// The projection's name: its checkpoint and service are `projection.{NAME}` (and
    /// `projection.{NAME}.v{VERSION}` from version 2 on, see [`Scope::checkpoint`]).
    const NAME: &'static str;

    /// The version of its read model (1 by default). Raise it when the handlers or the shape
    /// of what they write change: the new version builds its own documents (or tables) from
    /// the start of the log while the old one keeps serving queries, and once it has caught up
    /// queries switch to it and the old one is dropped ([`ReadStore::activate`]).
    const VERSION: u32 = 1;

    /// The events it handles (an [`EventSet`], as an aggregate's events are).
    type Event: EventSet;

    /// Where it writes.
    type Store: ReadStore;

    /// Why an event could not be applied.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies `event` (with its envelope: stream, position, metadata) to `batch`.
    fn apply(
        &self,
        batch: &mut <Self::Store as ReadStore>::Batch,
        event: Self::Event,
        envelope: &RecordedEvent,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Which version of which projection a batch writes: what a [`ReadStore`] keeps apart, so a
/// new version builds beside the one serving queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The projection's [`NAME`](Projection::NAME).
    pub projection: &'static str,
    /// Its [`VERSION`](Projection::VERSION).
    pub version: u32,
}

impl Scope {
    /// Version `version` of projection `projection`.
    pub const fn new(projection: &'static str, version: u32) -> Self {
        Self { projection, version }
    }

    /// The scope of projection `P`.
    pub const fn of<P: Projection>() -> Self {
        Self::new(P::NAME, P::VERSION)
    }

    /// Its checkpoint, service and dead-letter name: `projection.{NAME}` for version 1,
    /// `projection.{NAME}.v{VERSION}` for later ones.
    pub fn checkpoint(&self) -> String {
        Self::checkpoint_of(self.projection, self.version)
    }

    /// The checkpoint name of version `version` of `projection`.
    pub fn checkpoint_of(projection: &str, version: u32) -> String {
        if version <= 1 {
            format!("projection.{projection}")
        } else {
            format!("projection.{projection}.v{version}")
        }
    }

    /// The version of `projection` whose checkpoint is `name`, if it is one of its
    /// ([`checkpoint_of`](Self::checkpoint_of) read back).
    pub fn version_in(projection: &str, name: &str) -> Option<u32> {
        let rest = name.strip_prefix("projection.")?.strip_prefix(projection)?;
        if rest.is_empty() {
            return Some(1);
        }
        let digits = rest.strip_prefix(".v")?;
        if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().filter(|version| *version > 1)
    }
}

/// Checks a projection's name: `[a-z][a-z0-9_]*`, at most 63 bytes — it names the
/// projection's checkpoint, tables and keys (`#[projection]` checks it when it compiles; a
/// hand-written [`Projection::NAME`] is checked when the host is built, and by the runner).
///
/// # Errors
/// What is wrong with it.
pub fn projection_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err(format!("`{name}` must be 1 to 63 bytes long"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("`{name}` must start with a lowercase letter"));
    }
    match name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')) {
        Some(c) => Err(format!("`{name}` may hold only a-z, 0-9 and `_`, not {c:?}")),
        None => Ok(()),
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}", self.projection, self.version)
    }
}

/// A store of read models that applies a batch of changes together with a checkpoint: the
/// in-memory [`InMemoryDocuments`] here; PostgreSQL (the user's tables, in a transaction) and
/// Redis are its durable kinds.
///
/// It keeps the versions of a projection apart ([`Scope`]): each batch writes for one version,
/// queries read the version that is *active*, and [`activate`](Self::activate) switches them
/// to a newer one and drops the older ones. The first version of a projection to begin a batch
/// becomes active at once; a later one builds beside it until its runner has caught up with
/// the log and activates it. A batch of a version older than the active one applies nothing
/// ([`Saved::Retired`]).
pub trait ReadStore: Clone + Send + Sync + 'static {
    /// Changes made while applying one batch of events, not visible until committed.
    type Batch: Send;

    /// Why the store failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The checkpoints it keeps, as a consumer of the log reads them.
    type Checkpoints: CheckpointStore;

    /// Whether `error` may pass by itself (the store unreachable, a transaction that lost a
    /// race): the runner retries such a failure with its back-off, without a limit. One that
    /// cannot (a corrupt checkpoint, an operation the store refuses) stops the projection with
    /// it instead of being retried forever. By default every failure may pass.
    fn is_transient(error: &Self::Error) -> bool {
        let _ = error;
        true
    }

    /// A new batch, writing for `scope`. When no version of `scope.projection` is active yet,
    /// `scope.version` becomes the active one with the batch.
    fn begin(&self, scope: Scope) -> impl Future<Output = Result<Self::Batch, Self::Error>> + Send;

    /// The version of the batch's projection that served queries when `batch` began (its own,
    /// for the first batch of a new projection). When it is newer than the batch's version (the
    /// batch began after a switch), the runner applies nothing to the batch, and its commit
    /// answers [`Saved::Retired`].
    fn serving(batch: &Self::Batch) -> u32;

    /// The streams with dead letters of the batch's projection version when `batch` began
    /// (read with it, in the same round trip where the store can): the runner parks their
    /// later events too, so that each stream's order holds.
    fn parked(batch: &Self::Batch) -> &BTreeSet<String>;

    /// The version of `projection` that serves queries, if any.
    fn active_version(
        &self,
        projection: &'static str,
    ) -> impl Future<Output = Result<Option<u32>, Self::Error>> + Send;

    /// Makes `scope.version` the version of `scope.projection` that serves queries — unless a
    /// newer one already does — and drops every older version: its documents (or tables),
    /// checkpoint and dead letters. Answers the version it replaced.
    fn activate(
        &self,
        scope: Scope,
    ) -> impl Future<Output = Result<Option<u32>, Self::Error>> + Send;

    /// Empties `scope`'s version, to build it again from the start of the log: its documents
    /// (or the rows of its tables), checkpoint and dead letters. Queries of it see it empty
    /// until it is built again; a version that stays active while it is rebuilt is what a
    /// new [`VERSION`](Projection::VERSION) avoids.
    fn clear(&self, scope: Scope) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Called before each event is applied to `batch`, with the event: a store that guards each
    /// key with the position last applied to it (Redis, where delivery is at least once) notes
    /// the position here. Nothing by default.
    fn applying(batch: &mut Self::Batch, event: &RecordedEvent) {
        let _ = (batch, event);
    }

    /// Applies `batch` and moves checkpoint `at.name` from `at.after` to `at.to`, all or nothing:
    /// [`Saved::ByHandler`]; or, when the checkpoint is no longer at `at.after` (another
    /// process moved it on), applies nothing: [`Saved::Moved`]; or, when a newer version of the
    /// batch's projection is active, applies nothing: [`Saved::Retired`].
    fn commit(
        &self,
        batch: Self::Batch,
        at: Checkpoint<'_>,
    ) -> impl Future<Output = Result<Saved, Self::Error>> + Send;

    /// Applies `batch` without moving a checkpoint: for a projection fed by a consumer that
    /// keeps its position elsewhere (the bus's offsets), where delivery is at least once.
    /// [`Saved::ByConsumer`], or [`Saved::Retired`] (nothing applied) when a newer version of
    /// the batch's projection is active.
    fn commit_batch(
        &self,
        batch: Self::Batch,
    ) -> impl Future<Output = Result<Saved, Self::Error>> + Send;

    /// Its checkpoints, for the consumer's reader.
    fn checkpoints(&self) -> Self::Checkpoints;

    /// Adds `letter` to the dead letters, with the rest of `batch`.
    fn park(
        batch: &mut Self::Batch,
        letter: DeadLetter,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Removes the dead letter of event `event_id` of `projection`, with the rest of `batch`:
    /// `false` (and the batch must not be committed) when it is no longer there — another
    /// replay took it.
    fn unpark(
        batch: &mut Self::Batch,
        projection: &str,
        event_id: Uuid,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// The dead letters of `projection`, in log order.
    fn dead_letters(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, Self::Error>> + Send;

    /// The streams with dead letters of `projection` now (what [`parked`](Self::parked) holds
    /// for a batch begun now): for operators and tests.
    fn parked_streams(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<BTreeSet<String>, Self::Error>> + Send;
}

/// Why a projection could not apply a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError<E: std::error::Error + 'static, S: std::error::Error + 'static> {
    /// An event it handles did not decode (a version from the future, a corrupt payload): it is
    /// not retried.
    #[error("projection `{projection}` cannot decode event {event_id} `{name}`: {source}")]
    Decode {
        /// The projection.
        projection: &'static str,
        /// The event.
        event_id: uuid::Uuid,
        /// Its name.
        name: String,
        /// What the decoder said.
        #[source]
        source: DecodeError,
    },
    /// The projection's handler failed.
    #[error("projection `{projection}` failed on event {event_id}: {source}")]
    Apply {
        /// The projection.
        projection: &'static str,
        /// The event.
        event_id: uuid::Uuid,
        /// Its error.
        #[source]
        source: E,
    },
    /// The projection's name is not one ([`projection_name`]): nothing is applied.
    #[error("projection `{projection}` cannot run: {reason}; use a-z, 0-9 and `_`")]
    InvalidName {
        /// The projection.
        projection: &'static str,
        /// What is wrong with its name.
        reason: String,
    },
    /// A message from the bus does not carry an event.
    #[error(
        "projection `{projection}`: the message on `{topic}` does not carry an event: {source}"
    )]
    Message {
        /// The projection.
        projection: &'static str,
        /// Its topic.
        topic: String,
        /// What is wrong with it.
        #[source]
        source: crate::bus::MessageError,
    },
    /// The read store failed.
    #[error("projection `{projection}`: the read store failed: {source}")]
    Store {
        /// The projection.
        projection: &'static str,
        /// Its error.
        #[source]
        source: S,
    },
    /// The read store's circuit breaker is open ([`ProjectionRunner::with_breaker`]): the store
    /// was not called. Retried, as a store that is down would be.
    #[error(
        "projection `{projection}`: circuit breaker `{breaker}` is open, the read store was not \
         called; try again in {retry_after:?}"
    )]
    StoreUnavailable {
        /// The projection.
        projection: &'static str,
        /// The breaker's name.
        breaker: String,
        /// How long until it lets a call through.
        retry_after: std::time::Duration,
    },
}

/// The error of projection `P`'s runner.
pub type RunnerError<P> =
    ProjectionError<<P as Projection>::Error, <<P as Projection>::Store as ReadStore>::Error>;

/// Runs projection `P` on its store: the [`EventHandler`] a [`LogConsumer`] feeds. Decodes
/// with `C` (the event store's codec).
pub struct ProjectionRunner<P: Projection, C = Bincode> {
    projection: P,
    store: P::Store,
    codec: C,
    on_failure: OnFailure,
    attempts: u32,
    /// Events per batch read from the log.
    batch_size: usize,
    /// The event that failed last, and how many times in a row.
    failing: Option<(Uuid, u32)>,
    /// Its version serves queries (known once it has caught up).
    serving: bool,
    /// How many events the batch built last parked.
    parked: usize,
    /// What the calls to the read store go through, when it has one.
    breaker: Option<CircuitBreaker>,
}

impl<P: Projection, C> fmt::Debug for ProjectionRunner<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionRunner").field("projection", &P::NAME).finish_non_exhaustive()
    }
}

impl<P: Projection> ProjectionRunner<P> {
    /// `projection` writing to `store`, decoding with the default codec.
    pub fn new(projection: P, store: P::Store) -> Self {
        Self {
            projection,
            store,
            codec: Bincode,
            on_failure: OnFailure::default(),
            attempts: 5,
            batch_size: 2000,
            failing: None,
            serving: false,
            parked: 0,
            breaker: None,
        }
    }
}

impl<P: Projection, C: Codec> ProjectionRunner<P, C> {
    /// Decodes events with `codec`.
    pub fn with_codec<C2: Codec>(self, codec: C2) -> ProjectionRunner<P, C2> {
        ProjectionRunner {
            projection: self.projection,
            store: self.store,
            codec,
            on_failure: self.on_failure,
            attempts: self.attempts,
            batch_size: self.batch_size,
            failing: None,
            serving: false,
            parked: 0,
            breaker: self.breaker,
        }
    }

    /// Makes the calls that open and commit the read store's batches through `breaker`: once
    /// the store's failures that may pass ([`ReadStore::is_transient`]) reach its rate, the
    /// runner stops calling a store that is down for a while and fails its batches at once
    /// with [`ProjectionError::StoreUnavailable`], which its consumer retries after its
    /// back-off, as it would the store's own failure. Failures of the projection's events do
    /// not count.
    #[must_use]
    pub fn with_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Whether its store's calls go through a breaker.
    pub(crate) fn has_breaker(&self) -> bool {
        self.breaker.is_some()
    }

    /// How many times an event that fails is tried, with the consumer's back-off between
    /// tries, before [`OnFailure`] applies (5 by default; at least 1). Failures of the read
    /// store itself never park anything: those that may pass (unreachable, say) are retried
    /// without a limit, the others stop the projection ([`ReadStore::is_transient`]).
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// At most how many events of the log are applied in one batch, one transaction of the
    /// read store (2000 by default, against 500 for other consumers; at least 1). Larger
    /// batches rebuild and catch up faster — on PostgreSQL, a rebuild at 2000 runs about 15%
    /// faster than at 500 (`docs/performance.md`) — and hold their transaction longer; a live
    /// runner applies what has arrived since its last batch, so its batches stay small
    /// whatever the limit.
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// What to do with an event that cannot be applied ([`OnFailure::Park`] by default).
    #[must_use]
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// The checkpoint and service name: `projection.{NAME}`, or `projection.{NAME}.v{VERSION}`
    /// from version 2 on ([`Scope::checkpoint`]).
    pub fn name() -> String {
        Scope::of::<P>().checkpoint()
    }

    /// The read store.
    pub fn store(&self) -> &P::Store {
        &self.store
    }

    /// The consumer that runs it from `events`' log, its checkpoint kept in the read store.
    pub fn consumer<S: EventStore>(
        self,
        events: S,
    ) -> LogConsumer<S, <P::Store as ReadStore>::Checkpoints, Self> {
        let checkpoints = self.store.checkpoints();
        let batch_size = self.batch_size;
        LogConsumer::new(Self::name(), events, checkpoints, self).batch_size(batch_size)
    }

    /// Applies `events` to `batch`, parking the events of `parked` streams and of `parking`
    /// ones from the position given. The first failure comes back with its event.
    async fn apply_all<'e>(
        &self,
        batch: &mut <P::Store as ReadStore>::Batch,
        events: &[&'e RecordedEvent],
        parked: &BTreeSet<String>,
        parking: &BTreeMap<String, (Position, String)>,
    ) -> Result<usize, (RunnerError<P>, &'e RecordedEvent)> {
        let name = Self::name();
        let mut parked_now = 0;
        for &recorded in events {
            let stream = recorded.stream_id.as_str();
            let reason = match parking.get(stream) {
                Some((from, reason)) if recorded.position == *from => Some(reason.clone()),
                Some((from, _)) if recorded.position > *from => {
                    Some(format!("waits behind a parked event of stream `{stream}`"))
                }
                _ if parked.contains(stream) => {
                    Some(format!("waits behind a parked event of stream `{stream}`"))
                }
                _ => None,
            };
            if let Some(reason) = reason {
                let letter = DeadLetter {
                    projection: name.clone(),
                    event: recorded.clone(),
                    reason,
                    parked_at: chrono::Utc::now(),
                };
                <P::Store as ReadStore>::park(batch, letter).await.map_err(|source| {
                    (ProjectionError::Store { projection: P::NAME, source }, recorded)
                })?;
                parked_now += 1;
                continue;
            }
            self.apply_one(batch, recorded).await.map_err(|error| (error, recorded))?;
        }
        Ok(parked_now)
    }

    /// Decodes and applies one event, when the projection handles it.
    async fn apply_one(
        &self,
        batch: &mut <P::Store as ReadStore>::Batch,
        recorded: &RecordedEvent,
    ) -> Result<(), RunnerError<P>> {
        if !P::Event::NAMES.contains(&recorded.name.as_str()) {
            return Ok(());
        }
        let event: P::Event =
            recorded.decode(&self.codec).map_err(|source| ProjectionError::Decode {
                projection: P::NAME,
                event_id: recorded.event_id,
                name: recorded.name.clone(),
                source,
            })?;
        <P::Store as ReadStore>::applying(batch, recorded);
        self.projection.apply(batch, event, recorded).await.map_err(|source| {
            ProjectionError::Apply { projection: P::NAME, event_id: recorded.event_id, source }
        })
    }

    /// Builds the batch of `events`: applied — or, given `fresh` (a bus-fed runner's guard,
    /// [`StreamGuards`]), those of the events it handles that `fresh` keeps — with the failing
    /// events parked as the policy says. A failure the policy does not park comes back to the
    /// consumer, which retries it with its back-off (or stops, for one that cannot succeed).
    async fn build(
        &mut self,
        events: &[RecordedEvent],
        fresh: Option<Fresh<P::Store>>,
    ) -> Result<<P::Store as ReadStore>::Batch, RunnerError<P>> {
        projection_name(P::NAME)
            .map_err(|reason| ProjectionError::InvalidName { projection: P::NAME, reason })?;
        let store_error = |source| ProjectionError::Store { projection: P::NAME, source };
        // Guarded, only the events it handles: those are the streams whose versions it keeps
        // (an event it ignores changes nothing, and is not parked behind a failing one).
        let candidates: Vec<&RecordedEvent> = match fresh {
            Some(_) => events
                .iter()
                .filter(|event| P::Event::NAMES.contains(&event.name.as_str()))
                .collect(),
            None => events.iter().collect(),
        };
        let mut parking = BTreeMap::new();
        loop {
            let begun = self.store.begin(Scope::of::<P>());
            let mut batch = through::<P, _>(self.breaker.as_ref(), begun).await?;
            if <P::Store as ReadStore>::serving(&batch) > P::VERSION {
                self.parked = 0;
                return Ok(batch);
            }
            // Almost always empty, and then a copy costs nothing.
            let parked = <P::Store as ReadStore>::parked(&batch).clone();
            let kept: Vec<&RecordedEvent>;
            let chosen: &[&RecordedEvent] = match fresh {
                Some(fresh) => {
                    let indexes = fresh(&mut batch, &candidates).await.map_err(store_error)?;
                    kept = indexes.into_iter().map(|index| candidates[index]).collect();
                    &kept
                }
                None => &candidates,
            };
            let (error, event) = match self.apply_all(&mut batch, chosen, &parked, &parking).await {
                Ok(parked) => {
                    self.parked = parked;
                    return Ok(batch);
                }
                Err(failed) => failed,
            };
            // Whatever the batch holds is dropped: a failed statement may have spoilt it.
            drop(batch);
            if matches!(error, ProjectionError::Store { .. }) {
                return Err(error);
            }
            let tries = match self.failing {
                Some((id, tries)) if id == event.event_id => tries + 1,
                _ => 1,
            };
            self.failing = Some((event.event_id, tries));
            let exhausted =
                tries >= self.attempts || matches!(error, ProjectionError::Decode { .. });
            if !exhausted || self.on_failure == OnFailure::Stop {
                return Err(error);
            }
            tracing::warn!(
                projection = P::NAME,
                event_id = %event.event_id,
                stream = %event.stream_id,
                %error,
                "parking the event and the later events of its stream"
            );
            self.failing = None;
            parking
                .insert(event.stream_id.as_str().to_owned(), (event.position, error.to_string()));
        }
    }

    /// Replays the dead letters, stream by stream in log order: each stream's letters are
    /// applied and removed in one batch, or — when one fails again — left as they were. Run it
    /// once the cause is fixed; the live runner may go on meanwhile (a stream's events parked
    /// after the replay read its letters stay parked, behind them, for the next replay).
    ///
    /// # Errors
    /// The read store failed.
    pub async fn replay_parked(&mut self) -> Result<Replayed, RunnerError<P>> {
        let name = Self::name();
        let store_error = |source| ProjectionError::Store { projection: P::NAME, source };
        let letters = self.store.dead_letters(&name).await.map_err(store_error)?;
        let mut streams: Vec<(String, Vec<DeadLetter>)> = Vec::new();
        for letter in letters {
            let stream = letter.event.stream_id.as_str().to_owned();
            match streams.iter_mut().find(|(name, _)| *name == stream) {
                Some((_, letters)) => letters.push(letter),
                None => streams.push((stream, vec![letter])),
            }
        }
        let mut replayed = Replayed::default();
        'streams: for (stream, letters) in streams {
            let mut batch = self.store.begin(Scope::of::<P>()).await.map_err(store_error)?;
            for letter in &letters {
                let taken =
                    <P::Store as ReadStore>::unpark(&mut batch, &name, letter.event.event_id)
                        .await
                        .map_err(store_error)?;
                if !taken {
                    continue 'streams;
                }
                if let Err(error) = self.apply_one(&mut batch, &letter.event).await {
                    replayed.still_parked.push((stream.clone(), error.to_string()));
                    continue 'streams;
                }
            }
            if self.store.commit_batch(batch).await.map_err(store_error)? == Saved::Retired {
                break;
            }
            replayed.applied += letters.len();
        }
        Ok(replayed)
    }
}

impl<P: Projection, C> ProjectionRunner<P, C> {
    /// Counts `events`, the batch built last, committed `took` after it began
    /// ([`metrics::PROJECTION_EVENTS`](crate::metrics::PROJECTION_EVENTS) and the others).
    fn committed(&self, events: &[RecordedEvent], took: metrics::Stopwatch) {
        if let Some(last) = events.last() {
            let name = P::NAME;
            metrics::projection_batch(
                name,
                events.len(),
                last.recorded_at,
                chrono::Utc::now(),
                took,
            );
        }
        if self.parked > 0 {
            metrics::projection_parked(P::NAME, self.parked);
        }
    }
}

/// Calls projection `P`'s read store (`call`) through `breaker`, when there is one: only the
/// store's failures that may pass count towards opening it.
async fn through<P: Projection, T>(
    breaker: Option<&CircuitBreaker>,
    call: impl Future<Output = Result<T, <P::Store as ReadStore>::Error>>,
) -> Result<T, RunnerError<P>> {
    let store_error = |source| ProjectionError::Store { projection: P::NAME, source };
    let Some(breaker) = breaker else {
        return call.await.map_err(store_error);
    };
    match breaker.call_counting(call, <P::Store as ReadStore>::is_transient).await {
        Ok(value) => Ok(value),
        Err(BreakerError::Failed(source)) => Err(store_error(source)),
        Err(BreakerError::Open { breaker, retry_after }) => {
            Err(ProjectionError::StoreUnavailable { projection: P::NAME, breaker, retry_after })
        }
    }
}

/// The span of one batch a projection applies.
fn batch_span<P: Projection>(events: &[RecordedEvent]) -> tracing::Span {
    tracing::info_span!(
        "projection.batch",
        projection = P::NAME,
        version = P::VERSION,
        events = events.len(),
        last = %events.last().map_or(Position::START, |event| event.position),
    )
}

impl<P: Projection, C: Codec> ProjectionRunner<P, C> {
    /// Applies `events` in a batch committed without a checkpoint of its own.
    async fn apply_batch(&mut self, events: &[RecordedEvent]) -> Result<(), RunnerError<P>> {
        let took = metrics::Stopwatch::start();
        let batch = self.build(events, None).await?;
        let saved = through::<P, _>(self.breaker.as_ref(), self.store.commit_batch(batch)).await?;
        if saved != Saved::Retired {
            self.committed(events, took);
        }
        if saved == Saved::Retired {
            tracing::info!(
                projection = P::NAME,
                version = P::VERSION,
                "a newer version serves queries: this one applies nothing"
            );
        }
        Ok(())
    }
}

impl<P: Projection, C: Codec> EventHandler for ProjectionRunner<P, C> {
    type Error = RunnerError<P>;

    /// Applies the batch without a checkpoint of its own: what a consumer that keeps its
    /// position elsewhere calls (the bus's, through [`Events`](crate::consumer::Events)).
    /// [`handle_at`](EventHandler::handle_at) is what the runner's own consumer uses.
    async fn handle(&mut self, events: &[RecordedEvent]) -> Result<(), Self::Error> {
        let span = batch_span::<P>(events);
        self.apply_batch(events).instrument(span).await
    }

    async fn handle_at(
        &mut self,
        at: Checkpoint<'_>,
        events: &[RecordedEvent],
    ) -> Result<Saved, Self::Error> {
        let span = batch_span::<P>(events);
        async {
            let took = metrics::Stopwatch::start();
            let batch = self.build(events, None).await?;
            let saved =
                through::<P, _>(self.breaker.as_ref(), self.store.commit(batch, at)).await?;
            if matches!(saved, Saved::ByHandler | Saved::ByConsumer) {
                self.committed(events, took);
            }
            Ok(saved)
        }
        .instrument(span)
        .await
    }

    /// Once caught up with the log, a version that builds beside an older one becomes the one
    /// that serves queries, and the older one is dropped.
    async fn caught_up(&mut self, _at: Position) -> Result<(), Self::Error> {
        metrics::projection_caught_up(P::NAME);
        if self.serving {
            return Ok(());
        }
        let store_error = |source| ProjectionError::Store { projection: P::NAME, source };
        let active = self.store.active_version(P::NAME).await.map_err(store_error)?;
        if active.is_some_and(|active| active > P::VERSION) {
            // Retired: its next batch says so to the consumer.
            return Ok(());
        }
        if active != Some(P::VERSION) {
            let replaced = self.store.activate(Scope::of::<P>()).await.map_err(store_error)?;
            tracing::info!(
                projection = P::NAME,
                version = P::VERSION,
                replaced = ?replaced,
                "caught up: this version now serves queries, and the older ones are dropped"
            );
        }
        self.serving = true;
        Ok(())
    }

    /// The read store's failures that may pass; an event's until its attempts are spent (only
    /// [`OnFailure::Stop`] returns those: [`OnFailure::Park`] parks it instead).
    fn is_retryable(&self, error: &Self::Error) -> bool {
        match error {
            ProjectionError::Store { source, .. } => <P::Store as ReadStore>::is_transient(source),
            ProjectionError::StoreUnavailable { .. } => true,
            ProjectionError::Decode { .. }
            | ProjectionError::InvalidName { .. }
            | ProjectionError::Message { .. } => false,
            ProjectionError::Apply { .. } => {
                self.failing.is_none_or(|(_, tries)| tries < self.attempts)
            }
        }
    }
}
