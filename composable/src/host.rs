//! The application host: one builder that wires an application's aggregates and sagas to its
//! event store (and bus), checks the wiring when it is built, and runs the services a process
//! should run.
//!
//! An application registers its aggregates' runners and its sagas once; the host derives the rest:
//!
//! * **in process** ([`App::in_process`]): each saga reads its events from the log
//!   ([`saga::from_log`]) and dispatches to the registered runners directly; its timers fire on
//!   the host's clock ([`SagaTimers`]);
//! * **on a bus** ([`App::on_bus`]): the outbox [`Relay`] publishes the log, a [`CommandService`]
//!   hosts the aggregates behind their command topics, and each saga reads its events from the
//!   log and sends its commands through a [`BusDispatcher`]. The same binary runs every [`Role`]
//!   in one process, or a chosen subset per process ([`AppBuilder::roles`]). Several processes
//!   of one role share it: the command service's work through the bus's consumer group,
//!   partitioned by stream, so each stream's order holds; the log's consumers (the relay, each
//!   saga's input: why a saga reads the log, see [`AppBuilder::saga`]) through a claim in the
//!   checkpoint store — one process does the work, the others stand by and one takes over
//!   within [`AppBuilder::claim_ttl`] when it dies.
//!
//! [`AppBuilder::build`] checks what can be checked before anything runs: a saga handling an
//! event no registered aggregate emits (it would wait for ever), a saga dispatching to an
//! aggregate that is not registered ([`Saga::DISPATCHES`]), two services claiming one name
//! (and so one checkpoint), a role nobody declared, a process that would run nothing. Each is a
//! [`HostError`] that names what is missing and how to add it. [`RunningApp`] reports every
//! service's [`Health`] and stops them all.
//!
//! A process runs its application until it is told to stop: [`RunningApp::run_until_shutdown`]
//! returns on SIGINT or SIGTERM, or when a service fails, after stopping every service in a safe
//! order within a bounded grace period ([`Shutdown`]; what each kind of service finishes and
//! what it hands back is in the [`shutdown`] module's docs). [`RunningApp::liveness`] and
//! [`RunningApp::readiness`] say whether the process is alive (no service failed) and ready
//! (every service caught up once, or standing by), and which service is not and why; with the
//! `health-http` feature, a [`HealthServer`] answers them over HTTP for an orchestrator
//! (`/health/live`, `/health/ready`).
//!
//! ```
//! # use composable::{aggregate, apply, command, event, saga, start, step, Dispatch};
//! # use serde::{Deserialize, Serialize};
//! # #[event(name = "order.placed", version = 1)]
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Placed { pub id: String }
//! # #[event(name = "order.shipped", version = 1)]
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Shipped { pub id: String }
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Place { pub id: String }
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Ship { pub id: String }
//! # #[derive(Debug, Default)] pub struct Order { placed: bool, shipped: bool }
//! # #[derive(Debug, thiserror::Error)] #[error("refused")] pub struct Refused;
//! # #[aggregate(stream = "order")]
//! # impl Order {
//! #     #[command] fn place(&self, c: Place) -> Placed { Placed { id: c.id } }
//! #     #[command] fn ship(&self, c: Ship) -> Result<Shipped, Refused> {
//! #         if self.placed && !self.shipped { Ok(Shipped { id: c.id }) } else { Err(Refused) }
//! #     }
//! #     #[apply] fn placed(&mut self, _e: &Placed) { self.placed = true }
//! #     #[apply] fn shipped(&mut self, _e: &Shipped) { self.shipped = true }
//! # }
//! # #[derive(Debug, Default)] pub struct Shipping;
//! # #[saga(name = "shipping", key = id)]
//! # impl Shipping {
//! #     #[start(no_compensation)] fn placed(&mut self, e: &Placed) -> Dispatch {
//! #         Dispatch::to::<Order>(&e.id, Ship { id: e.id.clone() })
//! #     }
//! #     #[step(end)] fn shipped(&mut self, _e: &Shipped) {}
//! # }
//! use std::sync::Arc;
//! use composable::host::App;
//! use composable::saga::InMemoryTimerStore;
//! use composable::{AggregateRunner, InMemoryEventStore};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let store = InMemoryEventStore::new();
//! let orders = Arc::new(AggregateRunner::<Order, _>::new(store.clone(), ()));
//! let app = App::in_process("shop", store.clone())
//!     .timers(InMemoryTimerStore::new())
//!     .aggregate(&orders)
//!     .saga::<Shipping>()
//!     .build()?;
//! let running = app.start();
//! orders.execute("o1", Place { id: "o1".into() }).await?;
//! running.settle().await?;
//! assert!(orders.load("o1").await?.state.shipped);
//! running.stop().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

pub mod health;
#[cfg(feature = "health-http")]
pub mod http;
pub mod shutdown;

pub use health::{FailedService, Liveness, Probes, Readiness, ReadyState, ServiceReadiness};
#[cfg(feature = "health-http")]
pub use http::{HealthServer, HealthServerError};
pub use shutdown::{
    Shutdown, ShutdownCause, ShutdownReport, Signal, StoppedService, shutdown_signal,
};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::aggregate::Aggregate;
use crate::backoff::Backoff;
use crate::breaker::{BreakerPolicy, CircuitBreaker};
use crate::bus::{EventBus, topic_for};
use crate::checkpoint::{CheckpointStore, InMemoryCheckpointStore, SharedCheckpoints};
use crate::clock::{Clock, SystemClock};
use crate::codec::{Bincode, Codec};
use crate::command::CommandCodec;
use crate::command_bus::{BusDispatcher, CommandService, command_topic};
use crate::dispatch::{Dispatcher, LocalDispatcher};
use crate::event::EventSet;
use crate::event_store::{EventStore, EventStoreError};
use crate::projection::{
    Lag, Projection, ProjectionRunner, ProjectionState, ProjectionStatus, ReadStore, StreamGuards,
};
use crate::relay::Relay;
use crate::runner::AggregateRunner;
use crate::saga::{self, Saga, SagaRunner, SagaTimers, TimerStore};
use crate::service::{self, Health, Service, ServiceError, ServiceHandle, ServiceState};
use crate::stream::Position;

/// What one process of an application runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The outbox relay: the log to the bus (`relay`).
    Relay,
    /// The command service hosting the registered aggregates (`commands`).
    Commands,
    /// A saga's input and timers, by the saga's name.
    Saga(&'static str),
    /// A projection's runner, by the projection's name.
    Projection(&'static str),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Relay => f.write_str("relay"),
            Self::Commands => f.write_str("commands"),
            Self::Saga(name) | Self::Projection(name) => f.write_str(name),
        }
    }
}

/// The wiring of an application is wrong; nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// A saga handles an event that no registered aggregate emits.
    #[error(
        "saga `{saga}` handles `{event}`, which no registered aggregate emits, so it would wait \
         for it for ever: register the aggregate that emits it with `.aggregate(&runner)`"
    )]
    UnpublishedInput {
        /// The saga.
        saga: &'static str,
        /// The event name.
        event: &'static str,
    },
    /// A projection handles an event that no registered aggregate emits.
    #[error(
        "projection `{projection}` handles `{event}`, which no registered aggregate emits: \
         register the aggregate that emits it with `.aggregate(&runner)`"
    )]
    UnpublishedProjectionInput {
        /// The projection.
        projection: &'static str,
        /// The event name.
        event: &'static str,
    },
    /// A projection's name cannot name its checkpoint, tables and keys.
    #[error("projection `{projection}` has a name that cannot be stored: {reason}")]
    InvalidProjectionName {
        /// The projection.
        projection: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A saga dispatches commands to an aggregate that is not registered.
    #[error(
        "saga `{saga}` dispatches commands to aggregate `{aggregate}`, which is not registered, \
         so they would find no one to run them: register its runner with `.aggregate(&runner)`"
    )]
    UnregisteredTarget {
        /// The saga.
        saga: &'static str,
        /// The aggregate's stream category.
        aggregate: &'static str,
    },
    /// Two services have the same name, and so the same checkpoint.
    #[error(
        "two services are called `{name}` and would share one checkpoint: register each \
         aggregate and saga once, and give sagas distinct names"
    )]
    DuplicateService {
        /// The name.
        name: String,
    },
    /// An aggregate was registered twice.
    #[error("aggregate `{category}` is registered twice: register each aggregate's runner once")]
    DuplicateAggregate {
        /// Its stream category.
        category: &'static str,
    },
    /// A role to run is not one the application has.
    #[error("`{role}` is not a role of this application; its roles are {known:?}")]
    UnknownRole {
        /// The role asked for.
        role: String,
        /// The roles it has.
        known: Vec<String>,
    },
    /// The roles chosen select no service.
    #[error(
        "this process would run nothing: roles {roles:?} select no service (its roles are \
         {known:?})"
    )]
    NothingToRun {
        /// The roles chosen.
        roles: Vec<String>,
        /// The roles it has.
        known: Vec<String>,
    },
}

/// Services that ended with an error when the application stopped, or a wait that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// These services failed (each with its error).
    #[error("{} service(s) failed: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Failed(Vec<ServiceError>),
    /// A service failed while the application was waiting for it to catch up.
    #[error("service `{service}` failed: {reason}")]
    ServiceFailed {
        /// The service.
        service: String,
        /// Its error.
        reason: String,
    },
    /// The event store could not tell its head.
    #[error(transparent)]
    Store(#[from] EventStoreError),
}

/// The application without a bus: everything in one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBus;

/// The application without a timer store yet: it can host aggregates, not sagas (give it one
/// with [`AppBuilder::timers`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTimers;

/// A service ready to start, with its role.
struct Entry {
    name: String,
    role: Role,
    reads_log: bool,
    start: Box<dyn FnOnce() -> ServiceHandle + Send>,
    versions: Option<Versions>,
}

impl Entry {
    fn new<Sv: Service>(role: Role, reads_log: bool, service: Sv) -> Self {
        Self {
            name: service.name(),
            role,
            reads_log,
            start: Box::new(move || service::spawn(service)),
            versions: None,
        }
    }
}

/// The version of a projection that serves queries, as its store answers (`None` when none
/// does, or the store could not say).
type Serving = Pin<Box<dyn Future<Output = Option<u32>> + Send>>;

/// A projection's version, and how to ask its store which version serves queries.
#[derive(Clone)]
struct Versions {
    version: u32,
    serving: Arc<dyn Fn() -> Serving + Send + Sync>,
}

impl Versions {
    fn of<P: Projection>(store: P::Store) -> Self {
        let serving = move || -> Serving {
            let store = store.clone();
            Box::pin(async move {
                match store.active_version(P::NAME).await {
                    Ok(active) => active,
                    Err(error) => {
                        tracing::warn!(projection = P::NAME, %error, "could not read the active version");
                        None
                    }
                }
            })
        };
        Self { version: P::VERSION, serving: Arc::new(serving) }
    }
}

/// What the registrations see when the application is built.
struct Wiring<'a, S, B> {
    app: &'a str,
    store: &'a S,
    bus: &'a B,
    checkpoints: &'a SharedCheckpoints,
    clock: &'a Arc<dyn Clock>,
    /// In-process routes to every registered aggregate.
    dispatcher: &'a Arc<LocalDispatcher>,
    /// Adds the bus routes of every registered aggregate.
    bus_routes: &'a [BusRoute<B>],
    /// Adds every registered aggregate to a command service.
    command_routes: &'a [CommandRoute<B>],
    timer_interval: Duration,
    /// How long a saga waits for a command's reply over the bus.
    reply_timeout: Duration,
    /// The policy of each saga's dispatch breaker, when it has one.
    dispatch_breaker: Option<BreakerPolicy>,
    /// How each saga tries a failed dispatch again before its step fails, when it does.
    dispatch_retry: Option<Backoff>,
    /// How every service retries what failed, when the application says.
    backoff: Option<Backoff>,
    /// The policy of each projection's read-store breaker, when it has one.
    projection_breaker: Option<BreakerPolicy>,
    /// This process's claims on the log consumers' work: who, and for how long.
    claim: (uuid::Uuid, Duration),
    /// The categories of the registered aggregates that emit each event.
    emitters: &'a BTreeMap<&'static str, Vec<&'static str>>,
}

type BusRoute<B> = Box<dyn Fn(BusDispatcher<B>) -> BusDispatcher<B> + Send + Sync>;
type CommandRoute<B> = Box<dyn Fn(CommandService<B>) -> CommandService<B> + Send + Sync>;
type Registration<S, B> = Box<dyn FnOnce(&Wiring<'_, S, B>) -> Vec<Entry> + Send>;

/// A registered aggregate.
struct AggregateEntry<B> {
    category: &'static str,
    events: &'static [&'static str],
    route: Box<dyn FnOnce(LocalDispatcher) -> LocalDispatcher + Send>,
    command_route: Option<CommandRoute<B>>,
    bus_route: Option<BusRoute<B>>,
}

/// A registered saga, for the checks.
struct SagaEntry {
    name: &'static str,
    events: &'static [&'static str],
    /// The categories it dispatches to ([`Saga::DISPATCHES`]).
    targets: &'static [&'static str],
}

/// Builds an [`App`]: see the [module docs](self).
pub struct AppBuilder<S, T = NoTimers, B = NoBus> {
    name: String,
    store: S,
    timers: T,
    bus: B,
    checkpoints: SharedCheckpoints,
    clock: Arc<dyn Clock>,
    roles: Option<Vec<String>>,
    timer_interval: Duration,
    claim_ttl: Duration,
    reply_timeout: Duration,
    dispatch_breaker: Option<BreakerPolicy>,
    dispatch_retry: Option<Backoff>,
    backoff: Option<Backoff>,
    projection_breaker: Option<BreakerPolicy>,
    aggregates: Vec<AggregateEntry<B>>,
    sagas: Vec<SagaEntry>,
    /// Each projection's name and events, for the checks.
    projections: Vec<(&'static str, &'static [&'static str])>,
    registrations: Vec<Registration<S, B>>,
    on_bus: bool,
}

impl<S, T, B> fmt::Debug for AppBuilder<S, T, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppBuilder")
            .field("name", &self.name)
            .field("aggregates", &self.aggregates.iter().map(|a| a.category).collect::<Vec<_>>())
            .field("sagas", &self.sagas.iter().map(|s| s.name).collect::<Vec<_>>())
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// An application's wiring, checked: [`start`](App::start) it.
pub struct App<S> {
    store: S,
    clock: Arc<dyn Clock>,
    entries: Vec<Entry>,
    topics: Vec<String>,
}

impl<S> fmt::Debug for App<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let services: Vec<String> =
            self.entries.iter().map(|entry| format!("{} ({})", entry.name, entry.role)).collect();
        f.debug_struct("App").field("services", &services).finish_non_exhaustive()
    }
}

impl App<()> {
    /// An application on `store`, everything in one process: sagas read the log and dispatch
    /// to the registered runners directly. Sagas need a timer store ([`AppBuilder::timers`]).
    pub fn in_process<S>(name: impl Into<String>, store: S) -> AppBuilder<S>
    where
        S: EventStore + Clone,
    {
        AppBuilder::new(name.into(), store, NoTimers, NoBus)
    }

    /// An application on `store` and `bus`: the relay publishes the log, a command service
    /// hosts the aggregates, sagas read the log and send their commands through the bus; roles
    /// split that across processes. Sagas need a timer store ([`AppBuilder::timers`]).
    pub fn on_bus<S, B>(name: impl Into<String>, store: S, bus: B) -> AppBuilder<S, NoTimers, B>
    where
        S: EventStore + Clone,
        B: EventBus + Clone,
    {
        let mut builder = AppBuilder::new(name.into(), store, NoTimers, bus);
        builder.on_bus = true;
        builder.registrations.push(Box::new(|wiring: &Wiring<'_, S, B>| bus_services(wiring)));
        builder
    }
}

impl<S, B> AppBuilder<S, NoTimers, B> {
    /// Keeps the sagas' timers in `timers`: what [`saga`](AppBuilder::saga) needs.
    #[must_use]
    pub fn timers<T: TimerStore + Clone>(self, timers: T) -> AppBuilder<S, T, B> {
        AppBuilder {
            name: self.name,
            store: self.store,
            timers,
            bus: self.bus,
            checkpoints: self.checkpoints,
            clock: self.clock,
            roles: self.roles,
            timer_interval: self.timer_interval,
            claim_ttl: self.claim_ttl,
            reply_timeout: self.reply_timeout,
            dispatch_breaker: self.dispatch_breaker,
            dispatch_retry: self.dispatch_retry,
            backoff: self.backoff,
            projection_breaker: self.projection_breaker,
            aggregates: self.aggregates,
            sagas: self.sagas,
            projections: self.projections,
            registrations: self.registrations,
            on_bus: self.on_bus,
        }
    }
}

impl<S, T, B> AppBuilder<S, T, B> {
    fn new(name: String, store: S, timers: T, bus: B) -> Self {
        Self {
            name,
            store,
            timers,
            bus,
            checkpoints: SharedCheckpoints::new(InMemoryCheckpointStore::new()),
            clock: Arc::new(SystemClock),
            roles: None,
            timer_interval: Duration::from_secs(1),
            claim_ttl: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(30),
            dispatch_breaker: None,
            dispatch_retry: None,
            backoff: None,
            projection_breaker: None,
            aggregates: Vec::new(),
            sagas: Vec::new(),
            projections: Vec::new(),
            registrations: Vec::new(),
            on_bus: false,
        }
    }
}

impl<S, T, B> AppBuilder<S, T, B>
where
    S: EventStore + Clone,
{
    /// Keeps the checkpoints of the log's consumers (the relay, sagas reading the log) in
    /// `checkpoints`; by default they live in memory and a restarted process rereads the log
    /// (correct, only slower).
    #[must_use]
    pub fn checkpoints(mut self, checkpoints: impl CheckpointStore) -> Self {
        self.checkpoints = SharedCheckpoints::new(checkpoints);
        self
    }

    /// The clock sagas read the time from and their timers wait on (the system clock by
    /// default): the application's time, which a test moves with a `TestClock`. The services'
    /// waits on I/O — polling the log, waiting for a lagging log, retrying, waiting for a
    /// command's reply — stay on real time, so that a test clock that is not moved does not stall
    /// them; each of those parts takes a clock of its own (`with_clock`) where a test drives it
    /// directly.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long this process's claim on a log consumer's work (the relay's, a saga input's)
    /// lasts without renewal (default 10 s): several processes of one role leave the work to
    /// the one holding the claim, and another takes over within this time once that process
    /// dies. Claims live in the checkpoint store, so they span processes only with a shared
    /// one (PostgreSQL).
    #[must_use]
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl;
        self
    }

    /// How every saga tries a command again when its dispatch fails for a reason other than a
    /// refusal (an aggregate's store or the command service unreachable, no reply in time):
    /// after `retry`'s attempts the step fails with the last error and the instance records it
    /// and compensates ([`SagaRunner::with_dispatch_retry`]). [`Backoff::STANDARD`] is the
    /// usual policy. Without it (the default) the saga's input retries the event until the
    /// dispatch goes through, however long that takes.
    #[must_use]
    pub fn dispatch_retry(mut self, retry: Backoff) -> Self {
        self.dispatch_retry = Some(retry);
        self
    }

    /// The one back-off every service of the application retries with: the relay, the
    /// command service, each saga's input and timers, each projection (where its store or the
    /// bus failed; a projection's failing *events* follow its own attempts and are parked).
    /// Without it each keeps its default: from 10–100 ms doubling up to 5 s, with jitter, for
    /// ever. With a limit on attempts (`Backoff::STANDARD`: five), a service whose failure
    /// outlasts them stops with its error, and the process with it
    /// ([`RunningApp::run_until_shutdown`]): for an orchestrator to restart it.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Gives each projection's read store a circuit breaker named `projection.{name}` with
    /// `policy` ([`ProjectionRunner::with_breaker`]): while the store is down, batches fail at
    /// once and the projection backs off, its breaker's state a metric. Off by default; a
    /// runner registered with a breaker of its own keeps it.
    #[must_use]
    pub fn projection_breaker(mut self, policy: BreakerPolicy) -> Self {
        self.projection_breaker = Some(policy);
        self
    }

    /// How often each saga's timers service looks for due timers (default 1 s).
    #[must_use]
    pub fn timer_interval(mut self, every: Duration) -> Self {
        self.timer_interval = every;
        self
    }

    /// Runs only the services of these roles in this process (by default, all): `relay`,
    /// `commands`, and each saga's name. [`build`](Self::build) refuses names it does not know.
    #[must_use]
    pub fn roles(mut self, roles: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.roles = Some(roles.into_iter().map(Into::into).collect());
        self
    }

    fn add_aggregate(&mut self, entry: AggregateEntry<B>) {
        self.aggregates.push(entry);
    }

    /// Registers projection `P`, writing to `store`: its runner reads the log after the
    /// checkpoint it keeps in `store` (woken by the store's notifications) and commits each
    /// batch with it, so every event takes effect once. Of several processes running it, the
    /// one holding the claim works ([`claim_ttl`](Self::claim_ttl)). Failing events are parked
    /// after 5 attempts ([`OnFailure`](crate::projection::OnFailure)); to choose otherwise,
    /// register a configured runner with [`projection_runner`](Self::projection_runner).
    #[must_use]
    pub fn projection<P: Projection>(self, projection: P, store: P::Store) -> Self {
        self.projection_runner(ProjectionRunner::new(projection, store))
    }

    /// Registers a configured projection runner (its failure policy, attempts, codec).
    #[must_use]
    pub fn projection_runner<P: Projection, C: Codec>(
        mut self,
        runner: ProjectionRunner<P, C>,
    ) -> Self {
        self.projections.push((P::NAME, <P::Event as EventSet>::NAMES));
        self.registrations.push(Box::new(move |wiring: &Wiring<'_, S, B>| {
            let runner = store_breaker(wiring.projection_breaker, wiring.clock, runner);
            let versions = Versions::of::<P>(runner.store().clone());
            let mut consumer =
                runner.consumer(wiring.store.clone()).claimed(wiring.claim.0, wiring.claim.1);
            if let Some(backoff) = wiring.backoff {
                consumer = consumer.backoff(backoff);
            }
            let mut entry = Entry::new(Role::Projection(P::NAME), true, consumer);
            entry.versions = Some(versions);
            vec![entry]
        }));
        self
    }

    fn add_saga<G: Saga>(&mut self, registration: Registration<S, B>) {
        self.sagas.push(SagaEntry {
            name: G::NAME,
            events: G::Event::NAMES,
            targets: G::DISPATCHES,
        });
        self.registrations.push(registration);
    }

    /// Checks the wiring and prepares the services of the chosen roles.
    ///
    /// # Errors
    /// See [`HostError`]: every mistake is reported, the first one returned.
    pub fn build(self) -> Result<App<S>, HostError> {
        let mut emitters: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
        let mut categories = BTreeSet::new();
        for aggregate in &self.aggregates {
            if !categories.insert(aggregate.category) {
                return Err(HostError::DuplicateAggregate { category: aggregate.category });
            }
            for event in aggregate.events {
                emitters.entry(event).or_default().push(aggregate.category);
            }
        }
        for saga in &self.sagas {
            if let Some(event) = saga.events.iter().find(|event| !emitters.contains_key(*event)) {
                return Err(HostError::UnpublishedInput { saga: saga.name, event });
            }
            if let Some(aggregate) =
                saga.targets.iter().find(|target| !categories.contains(*target))
            {
                return Err(HostError::UnregisteredTarget { saga: saga.name, aggregate });
            }
        }

        for (projection, events) in &self.projections {
            if let Err(reason) = crate::projection::projection_name(projection) {
                return Err(HostError::InvalidProjectionName { projection, reason });
            }
            if let Some(event) = events.iter().find(|event| !emitters.contains_key(*event)) {
                return Err(HostError::UnpublishedProjectionInput { projection, event });
            }
        }

        let mut topics = BTreeSet::new();
        if self.on_bus {
            for aggregate in &self.aggregates {
                topics.insert(topic_for(aggregate.category));
                topics.insert(command_topic(aggregate.category));
            }
            for saga in &self.sagas {
                topics.insert(topic_for(&crate::saga::category(saga.name)));
                topics.insert(reply_topic(&self.name, saga.name));
            }
        }
        let mut dispatcher = LocalDispatcher::new();
        let mut bus_routes = Vec::new();
        let mut command_routes = Vec::new();
        for aggregate in self.aggregates {
            dispatcher = (aggregate.route)(dispatcher);
            bus_routes.extend(aggregate.bus_route);
            command_routes.extend(aggregate.command_route);
        }
        let dispatcher = Arc::new(dispatcher);
        let wiring = Wiring {
            app: &self.name,
            store: &self.store,
            bus: &self.bus,
            checkpoints: &self.checkpoints,
            clock: &self.clock,
            dispatcher: &dispatcher,
            bus_routes: &bus_routes,
            command_routes: &command_routes,
            timer_interval: self.timer_interval,
            reply_timeout: self.reply_timeout,
            dispatch_breaker: self.dispatch_breaker,
            dispatch_retry: self.dispatch_retry,
            backoff: self.backoff,
            projection_breaker: self.projection_breaker,
            claim: (uuid::Uuid::now_v7(), self.claim_ttl),
            emitters: &emitters,
        };
        let mut entries = Vec::new();
        for registration in self.registrations {
            entries.extend(registration(&wiring));
        }

        let mut names = BTreeSet::new();
        for entry in &entries {
            if !names.insert(entry.name.clone()) {
                return Err(HostError::DuplicateService { name: entry.name.clone() });
            }
        }
        let known: Vec<String> = entries
            .iter()
            .map(|entry| entry.role.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if let Some(roles) = &self.roles {
            if let Some(role) = roles.iter().find(|role| !known.contains(role)) {
                return Err(HostError::UnknownRole { role: role.clone(), known });
            }
            entries.retain(|entry| roles.contains(&entry.role.to_string()));
            if entries.is_empty() {
                return Err(HostError::NothingToRun { roles: roles.clone(), known });
            }
        }
        Ok(App {
            store: self.store,
            clock: self.clock,
            entries,
            topics: topics.into_iter().collect(),
        })
    }
}

impl<S, T> AppBuilder<S, T, NoBus>
where
    S: EventStore + Clone,
{
    /// Registers an aggregate's runner: sagas dispatch its commands to it.
    #[must_use]
    pub fn aggregate<A, E>(mut self, runner: &Arc<AggregateRunner<A, S, E>>) -> Self
    where
        A: Aggregate,
        A::Command: Clone,
        E: Codec,
    {
        let runner = Arc::clone(runner);
        self.add_aggregate(AggregateEntry {
            category: A::STREAM,
            events: <A::Event as EventSet>::NAMES,
            route: Box::new(move |dispatcher: LocalDispatcher| dispatcher.route(runner)),
            command_route: None,
            bus_route: None,
        });
        self
    }

    /// Registers saga `G`: its input from the log, dispatching to the registered aggregates,
    /// and its timers (in the store given with [`timers`](AppBuilder::timers)).
    #[must_use]
    pub fn saga<G: Saga>(mut self) -> Self
    where
        T: TimerStore + Clone,
    {
        let timers = self.timers.clone();
        self.add_saga::<G>(Box::new(move |wiring: &Wiring<'_, S, NoBus>| {
            saga_services::<G, _, _, _, _>(wiring, timers, Arc::clone(wiring.dispatcher))
        }));
        self
    }
}

impl<S, T, B> AppBuilder<S, T, B>
where
    S: EventStore + Clone,
    B: EventBus + Clone,
{
    /// How long a saga waits for the reply to a command it sent through the bus (default 30 s);
    /// without one, it handles the input again later with the same command ids.
    #[must_use]
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }

    /// Sends each saga's commands through a [`CircuitBreaker`] with `policy`, called
    /// `dispatch.{saga}` and kept on the host's clock: while the command service does not
    /// answer, the saga's dispatches fail at once (and its input backs off) instead of each
    /// waiting out the [`reply_timeout`](Self::reply_timeout). Off by default.
    #[must_use]
    pub fn dispatch_breaker(mut self, policy: BreakerPolicy) -> Self {
        self.dispatch_breaker = Some(policy);
        self
    }

    /// Registers an aggregate's runner: the command service hosts it behind
    /// `{category}-commands`, and sagas send its commands there.
    #[must_use]
    pub fn aggregate<A, E>(mut self, runner: &Arc<AggregateRunner<A, S, E>>) -> Self
    where
        A: Aggregate,
        A::Command: CommandCodec<Bincode> + Clone,
        E: Codec,
    {
        let local = Arc::clone(runner);
        let hosted = Arc::clone(runner);
        self.add_aggregate(AggregateEntry {
            category: A::STREAM,
            events: <A::Event as EventSet>::NAMES,
            route: Box::new(move |dispatcher: LocalDispatcher| dispatcher.route(local)),
            command_route: Some(Box::new(move |service: CommandService<B>| {
                service.route(Arc::clone(&hosted))
            })),
            bus_route: Some(Box::new(|dispatcher: BusDispatcher<B>| dispatcher.route::<A>())),
        });
        self
    }

    /// Registers projection `P`, writing to `store`, fed from the bus: it catches up from the
    /// log, then follows the topics of the aggregates that emit its events in a consumer group
    /// of its own (`{app}.projection.{NAME}`, and `.v{VERSION}` from version 2 on), which
    /// several processes share by partition. The store keeps the version of each stream it
    /// applied, so a delivery the bus makes twice changes nothing
    /// ([`ProjectionFromBus`](crate::projection::ProjectionFromBus)).
    ///
    /// Prefer [`projection`](Self::projection), from the log, unless the work must be shared:
    /// on the bus only each stream's order holds, and a query cannot wait for a command's
    /// token ([`ServiceHandle::reached`]) since the position it reports is the newest event it
    /// handled, not one before which every event was. Nor does [`RunningApp::settle`] wait for it.
    #[must_use]
    pub fn projection_from_bus<P: Projection>(self, projection: P, store: P::Store) -> Self
    where
        P::Store: StreamGuards,
    {
        self.projection_runner_from_bus(ProjectionRunner::new(projection, store))
    }

    /// Registers a configured projection runner fed from the bus (its failure policy,
    /// attempts, codec): see [`projection_from_bus`](Self::projection_from_bus).
    #[must_use]
    pub fn projection_runner_from_bus<P: Projection, C: Codec>(
        mut self,
        runner: ProjectionRunner<P, C>,
    ) -> Self
    where
        P::Store: StreamGuards,
    {
        self.projections.push((P::NAME, <P::Event as EventSet>::NAMES));
        self.registrations.push(Box::new(move |wiring: &Wiring<'_, S, B>| {
            let runner = store_breaker(wiring.projection_breaker, wiring.clock, runner);
            let versions = Versions::of::<P>(runner.store().clone());
            let topics: BTreeSet<String> = <P::Event as EventSet>::NAMES
                .iter()
                .flat_map(|event| wiring.emitters.get(event).into_iter().flatten())
                .map(|category| topic_for(category))
                .collect();
            let group = format!("{}.{}", wiring.app, ProjectionRunner::<P, C>::name());
            let mut service = runner
                .from_bus(wiring.store.clone(), wiring.bus.clone(), topics)
                .with_group(group)
                .with_clock(Arc::clone(wiring.clock));
            if let Some(backoff) = wiring.backoff {
                service = service.backoff(backoff);
            }
            // Not waited for by `settle`: its position is not one the whole log has reached.
            let mut entry = Entry::new(Role::Projection(P::NAME), false, service);
            entry.versions = Some(versions);
            vec![entry]
        }));
        self
    }

    /// Registers saga `G`: its input from the event store's log (woken by the store's
    /// notifications), its commands sent through the bus to the command service, and its
    /// timers.
    ///
    /// The input comes from the log, not from the topics the relay fills: the log is one total
    /// order, so a saga always sees a step's event after the event that started its instance.
    /// On the bus, events of different streams travel in different partitions, and after a
    /// crash the redelivered start of an instance can arrive after its next step's event,
    /// which the saga would then ignore ([`saga::from_bus`] says more). Of several processes
    /// running the saga, the one holding the claim on its input reads it; the others stand by
    /// ([`AppBuilder::claim_ttl`]).
    #[must_use]
    pub fn saga<G: Saga>(mut self) -> Self
    where
        T: TimerStore + Clone,
    {
        let timers = self.timers.clone();
        self.add_saga::<G>(Box::new(move |wiring: &Wiring<'_, S, B>| {
            // Each process waits for the replies to its own commands: a group of its own.
            let replies = reply_topic(wiring.app, G::NAME);
            let group = format!("{replies}.{}", uuid::Uuid::now_v7().simple());
            let mut dispatcher = BusDispatcher::new(wiring.bus.clone(), Bincode, replies)
                .with_group(group)
                .with_timeout(wiring.reply_timeout);
            if let Some(policy) = wiring.dispatch_breaker {
                let breaker = CircuitBreaker::new(format!("dispatch.{}", G::NAME), policy)
                    .with_clock(Arc::clone(wiring.clock));
                dispatcher = dispatcher.with_breaker(breaker);
            }
            let dispatcher =
                wiring.bus_routes.iter().fold(dispatcher, |dispatcher, route| route(dispatcher));
            saga_services::<G, _, _, _, _>(wiring, timers, dispatcher)
        }));
        self
    }
}

/// Saga `G`'s services, sending its commands through `dispatcher`: its input from the log and
/// its timers.
fn saga_services<G, S, T, B, D>(wiring: &Wiring<'_, S, B>, timers: T, dispatcher: D) -> Vec<Entry>
where
    G: Saga,
    S: EventStore + Clone,
    T: TimerStore,
    D: Dispatcher,
{
    let mut runner = SagaRunner::<G, _, _, _>::new(wiring.store.clone(), dispatcher, timers)
        .with_clock(Arc::clone(wiring.clock));
    if let Some(retry) = wiring.dispatch_retry {
        runner = runner.with_dispatch_retry(retry);
    }
    let runner = Arc::new(runner);
    let role = Role::Saga(G::NAME);
    let mut input =
        saga::from_log(&runner, wiring.checkpoints.clone()).claimed(wiring.claim.0, wiring.claim.1);
    let mut timers =
        SagaTimers::every(runner, wiring.timer_interval).wait_for_input(wiring.checkpoints.clone());
    if let Some(backoff) = wiring.backoff {
        input = input.backoff(backoff);
        timers = timers.backoff(backoff);
    }
    vec![Entry::new(role.clone(), true, input), Entry::new(role, false, timers)]
}

/// `runner` with a read-store breaker `projection.{name}` of `policy`, unless it has one.
fn store_breaker<P: Projection, C: Codec>(
    policy: Option<BreakerPolicy>,
    clock: &Arc<dyn Clock>,
    runner: ProjectionRunner<P, C>,
) -> ProjectionRunner<P, C> {
    match policy {
        Some(policy) if !runner.has_breaker() => {
            let name = format!("projection.{}", P::NAME);
            runner.with_breaker(CircuitBreaker::new(name, policy).with_clock(Arc::clone(clock)))
        }
        _ => runner,
    }
}

/// Where saga `saga` of application `app` waits for the replies to its commands.
fn reply_topic(app: &str, saga: &str) -> String {
    format!("{app}.{saga}-replies")
}

/// The relay and the command service of an application on a bus.
fn bus_services<S, B>(wiring: &Wiring<'_, S, B>) -> Vec<Entry>
where
    S: EventStore + Clone,
    B: EventBus + Clone,
{
    let relay = Relay::named(
        format!("{}.relay", wiring.app),
        wiring.store.clone(),
        wiring.bus.clone(),
        wiring.checkpoints.clone(),
    )
    .claimed(wiring.claim.0, wiring.claim.1);
    let relay = match wiring.backoff {
        Some(backoff) => relay.backoff(backoff),
        None => relay,
    };
    let mut entries = vec![Entry::new(Role::Relay, true, relay)];
    if !wiring.command_routes.is_empty() {
        let mut service = CommandService::new(wiring.bus.clone(), Bincode)
            .with_group(format!("{}.commands", wiring.app));
        if let Some(backoff) = wiring.backoff {
            service = service.backoff(backoff);
        }
        let service = wiring.command_routes.iter().fold(service, |service, route| route(service));
        entries.push(Entry::new(Role::Commands, false, service));
    }
    entries
}

impl<S: EventStore> App<S> {
    /// The services this process will run, with their roles.
    pub fn services(&self) -> Vec<(String, Role)> {
        self.entries.iter().map(|entry| (entry.name.clone(), entry.role.clone())).collect()
    }

    /// Every topic the application uses on its bus (none in process): each aggregate's and
    /// saga's `{category}-events`, each aggregate's `{category}-commands`, each saga's reply
    /// topic. Create them before starting when the broker does not create topics itself.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Starts every service.
    pub fn start(self) -> RunningApp<S> {
        let services = self
            .entries
            .into_iter()
            .map(|entry| RunningService {
                name: entry.name,
                role: entry.role,
                reads_log: entry.reads_log,
                handle: (entry.start)(),
                versions: entry.versions,
            })
            .collect();
        RunningApp {
            store: self.store,
            clock: self.clock,
            services,
            shutting_down: Arc::new(AtomicBool::new(false)),
        }
    }
}

struct RunningService {
    name: String,
    role: Role,
    reads_log: bool,
    handle: ServiceHandle,
    versions: Option<Versions>,
}

/// The health of one service of a [`RunningApp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The service's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its health.
    pub health: Health,
}

/// A started [`App`]: its services' health, and a way to stop them all.
pub struct RunningApp<S> {
    store: S,
    clock: Arc<dyn Clock>,
    services: Vec<RunningService>,
    /// Set when it begins to shut down: the probes then say it is not ready.
    shutting_down: Arc<AtomicBool>,
}

impl<S> fmt::Debug for RunningApp<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let services: Vec<&str> =
            self.services.iter().map(|service| service.name.as_str()).collect();
        f.debug_struct("RunningApp").field("services", &services).finish_non_exhaustive()
    }
}

impl<S: EventStore> RunningApp<S> {
    /// The running service called `name` (as [`App::services`] lists them), for example to wait
    /// until a projection has reached a command's token ([`ServiceHandle::reached`]).
    pub fn service(&self, name: &str) -> Option<&ServiceHandle> {
        self.services.iter().find(|service| service.name == name).map(|service| &service.handle)
    }

    /// Every projection's state, position and lag behind the head of the log (in events, and
    /// how long the oldest unhandled one has waited, by the host's clock).
    ///
    /// # Errors
    /// The event store failed while counting.
    pub async fn projections(&self) -> Result<Vec<ProjectionStatus>, EventStoreError> {
        let mut statuses = Vec::new();
        for service in &self.services {
            let (Role::Projection(_), Some(versions)) = (&service.role, &service.versions) else {
                continue;
            };
            let health = service.handle.health();
            let position = health.position;
            let lag =
                Lag::of(&self.store, position.unwrap_or(Position::START), self.clock.now()).await?;
            let serving = (versions.serving)().await;
            statuses.push(ProjectionStatus {
                name: service.name.clone(),
                state: ProjectionState::of(&health).building(versions.version, serving),
                version: versions.version,
                serving,
                position,
                lag,
            });
        }
        Ok(statuses)
    }

    /// Every service's health.
    pub fn health(&self) -> Vec<ServiceStatus> {
        self.services
            .iter()
            .map(|service| ServiceStatus {
                name: service.name.clone(),
                role: service.role.clone(),
                health: service.handle.health(),
            })
            .collect()
    }

    /// Liveness and readiness of this process's services, as a handle that outlives the
    /// application (for a probe endpoint that keeps answering while it shuts down): see
    /// [`Probes`].
    pub fn probes(&self) -> Probes {
        let services = self
            .services
            .iter()
            .map(|service| health::Probed {
                name: service.name.clone(),
                role: service.role.clone(),
                health: service.handle.watch_health(),
            })
            .collect();
        Probes::new(services, Arc::clone(&self.shutting_down))
    }

    /// Whether the process is live: no service failed ([`Probes::liveness`]).
    pub fn liveness(&self) -> Liveness {
        self.probes().liveness()
    }

    /// Whether the process is ready, and each service's state ([`Probes::readiness`]): every
    /// service running and caught up at least once since it started (or standing by for
    /// another process's claim), and not shutting down.
    pub fn readiness(&self) -> Readiness {
        self.probes().readiness()
    }

    /// Whether every service is running (none failed or stopped).
    pub fn is_healthy(&self) -> bool {
        self.services.iter().all(|service| service.handle.health().state == ServiceState::Running)
    }

    /// Completes when a service fails, with its status; never while all run or stop cleanly.
    pub async fn failure(&self) -> ServiceStatus {
        let waits = self.services.iter().map(|service| {
            let mut health = service.handle.watch_health();
            let (name, role) = (service.name.clone(), service.role.clone());
            Box::pin(async move {
                let failed = health
                    .wait_for(|health| matches!(health.state, ServiceState::Failed(_)))
                    .await
                    .map(|health| health.clone());
                match failed {
                    Ok(health) => ServiceStatus { name, role, health },
                    // The service is gone without failing: nothing to report from it.
                    Err(_) => std::future::pending().await,
                }
            })
        });
        let waits: Vec<_> = waits.collect();
        if waits.is_empty() {
            return std::future::pending().await;
        }
        futures::future::select_all(waits).await.0
    }

    /// Waits until every service reading the log has handled everything committed, and the head
    /// stopped moving: what was appended before the call, and everything it caused in this
    /// process, has been handled.
    ///
    /// # Errors
    /// [`RunError::ServiceFailed`] when a service failed meanwhile; [`RunError::Store`] when the
    /// store cannot tell its head.
    pub async fn settle(&self) -> Result<(), RunError> {
        loop {
            let head = self.store.head().await?;
            for service in self.services.iter().filter(|service| service.reads_log) {
                let mut health = service.handle.watch_health();
                // A standby leaves the work to the process holding the claim.
                let reached = |health: &Health| {
                    health.is_finished()
                        || health.standby
                        || (health.caught_up && health.position.unwrap_or(Position::START) >= head)
                };
                let health = match health.wait_for(reached).await {
                    Ok(health) => health.clone(),
                    Err(_) => service.handle.health(),
                };
                if let ServiceState::Failed(reason) = health.state {
                    return Err(RunError::ServiceFailed { service: service.name.clone(), reason });
                }
            }
            if self.store.head().await? == head {
                return Ok(());
            }
        }
    }

    /// Stops every service, letting each finish the work in hand: in the reverse order of
    /// their registration — sagas before the command service that answers them, the command
    /// service before the relay — so that no service waits on one already stopped.
    ///
    /// # Errors
    /// [`RunError::Failed`] with every service that had failed or failed to stop.
    pub async fn stop(self) -> Result<(), RunError> {
        let mut failures = Vec::new();
        for service in self.services.into_iter().rev() {
            if let Err(error) = service.handle.stop().await {
                failures.push(error);
            }
        }
        if failures.is_empty() { Ok(()) } else { Err(RunError::Failed(failures)) }
    }
}
