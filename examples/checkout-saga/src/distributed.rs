//! The checkout on PostgreSQL and Kafka: the aggregates' events and the saga's timers in one
//! database, the outbox [`Relay`] publishing the events table to `{category}-events`, the saga
//! reading its input from those topics in a consumer group, and its commands crossing the
//! broker too: a [`BusDispatcher`] publishes them to `{category}-commands` and waits for the
//! reply on [`REPLY_TOPIC`], a [`CommandService`] hosting the three aggregates executes them.
//! The saga and the aggregates can therefore run in one process or in two (the binary's
//! `--role`).
//!
//! A delivery of the saga's input is acknowledged once [`SagaRunner::handle`] succeeded, so a
//! crash in between redelivers it, and the saga ignores what it recorded already; the commands
//! it sends again carry the same command ids, which the aggregates answer as duplicates.

use std::collections::HashSet;
use std::time::Duration;

use composable::bus::{BusError, BusMessage, EventBus, Subscription, topic_for};
use composable::command_bus::{BusDispatcher, CommandService, command_topic};
use composable::relay::Relay;
use composable::saga::{CommandDispatcher, Progress, TimerStore};
use composable::service::{self, ServiceHandle};
use composable::{Bincode, Clock, EventStore, Position, SagaRunner};
use composable_kafka::{KafkaBus, KafkaConfig};
use composable_postgres::{PostgresCheckpointStore, PostgresEventStore, PostgresTimerStore};
use uuid::Uuid;

use crate::{Aggregates, Checkout, CheckoutSaga, Inventory, Order, Payment};

/// Any failure of the wiring: the store, the bus, the relay or the saga.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The stream categories the saga reads.
pub const INPUT_CATEGORIES: [&str; 3] = ["order", "payment", "inventory"];

/// Every category the relay publishes: the saga's input and the saga's own records.
pub const CATEGORIES: [&str; 4] = ["order", "payment", "inventory", "saga.checkout"];

/// The aggregates the saga sends commands to, each on `{category}-commands`.
pub const COMMAND_CATEGORIES: [&str; 3] = ["order", "payment", "inventory"];

/// Where the saga's dispatcher waits for the replies to its commands.
pub const REPLY_TOPIC: &str = "checkout-saga-replies";

/// How long the saga waits for a command's reply; after that, the input is retried later.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The broker, with the run's topic prefix.
pub type Bus = Namespaced<KafkaBus>;

/// The checkout whose saga sends its commands through the broker.
pub type DistributedCheckout = Checkout<PostgresEventStore, PostgresTimerStore, BusDispatcher<Bus>>;

/// Partitions of each topic created up front.
pub const PARTITIONS: i32 = 3;

/// How long [`SagaInput::run_until_idle`] waits for an event that is in the store but not yet
/// delivered before giving up.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A bus whose topic names (and consumer groups) all start with `prefix`, so that runs sharing a
/// broker do not see each other's events. An empty prefix leaves the names as they are.
#[derive(Debug, Clone)]
pub struct Namespaced<B> {
    inner: B,
    prefix: String,
}

impl<B> Namespaced<B> {
    /// `inner` with every topic and group renamed to `{prefix}{name}`.
    pub fn new(inner: B, prefix: impl Into<String>) -> Self {
        Self { inner, prefix: prefix.into() }
    }

    /// The name `name` has on the broker.
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The bus under the prefix.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

impl<B: EventBus> EventBus for Namespaced<B> {
    async fn publish(&self, mut messages: Vec<BusMessage>) -> Result<(), BusError> {
        for message in &mut messages {
            message.topic.insert_str(0, &self.prefix);
        }
        self.inner.publish(messages).await
    }

    async fn subscribe(
        &self,
        group: Option<&str>,
        topics: &[&str],
    ) -> Result<Subscription, BusError> {
        let group = group.map(|group| self.name(group));
        let topics: Vec<String> = topics.iter().map(|topic| self.name(topic)).collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.inner.subscribe(group.as_deref(), &topics).await
    }
}

/// Kafka settings for the checkout: short batching and fetch waits, since each saga step waits
/// for the previous one's event to come back from the broker.
pub fn kafka_config(brokers: &str) -> KafkaConfig {
    KafkaConfig::new(brokers)
        .linger(Duration::from_millis(1))
        .message_timeout(Duration::from_secs(20))
        .session_timeout(Duration::from_secs(6))
        .set("fetch.wait.max.ms", "5")
}

/// The checkout's PostgreSQL database and Kafka broker, with the topics created.
#[derive(Debug, Clone)]
pub struct Distributed {
    store: PostgresEventStore,
    timers: PostgresTimerStore,
    bus: Namespaced<KafkaBus>,
}

impl Distributed {
    /// Migrates `store`, checks that the broker answers and creates the topics (prefixed with
    /// `prefix`): `{category}-events` for every category in [`CATEGORIES`],
    /// `{category}-commands` for every one in [`COMMAND_CATEGORIES`], and [`REPLY_TOPIC`].
    ///
    /// # Errors
    /// When the migration, the connection to the broker or the topic creation fails.
    pub async fn connect(
        store: PostgresEventStore,
        kafka: KafkaConfig,
        prefix: &str,
    ) -> Result<Self, Error> {
        store.migrate().await?;
        let timers = PostgresTimerStore::new(store.pool().clone());
        let brokers = kafka.brokers().to_owned();
        let kafka = KafkaBus::new(kafka)?;
        kafka
            .check_connection(Duration::from_secs(10))
            .await
            .map_err(|error| format!("cannot reach the Kafka broker at {brokers}: {error}"))?;
        let bus = Namespaced::new(kafka, prefix);
        let topics: Vec<String> = CATEGORIES
            .iter()
            .map(|category| topic_for(category))
            .chain(COMMAND_CATEGORIES.iter().map(|category| command_topic(category)))
            .chain([REPLY_TOPIC.to_owned()])
            .map(|topic| bus.name(&topic))
            .collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        bus.inner.create_topics(&topics, PARTITIONS, 1).await?;
        Ok(Self { store, timers, bus })
    }

    /// The event store.
    pub fn store(&self) -> &PostgresEventStore {
        &self.store
    }

    /// The runners on the database, time from `clock`; the saga sends its commands through the
    /// broker ([`Distributed::dispatcher`]), so a command service must host the aggregates
    /// ([`Distributed::spawn_command_service`], here or in another process).
    pub fn checkout(&self, clock: impl Clock + Clone) -> DistributedCheckout {
        Checkout::with_dispatcher(self.store.clone(), self.timers.clone(), clock, self.dispatcher())
    }

    /// The runners on the database, time from `clock`, with the saga dispatching to them in
    /// this process: only the saga's input crosses the broker. What `benches/checkout_kafka.rs`
    /// measures.
    pub fn checkout_in_process(
        &self,
        clock: impl Clock + Clone,
    ) -> Checkout<PostgresEventStore, PostgresTimerStore> {
        Checkout::new(self.store.clone(), self.timers.clone(), clock)
    }

    /// The saga's dispatcher: commands for the three aggregates to `{category}-commands`,
    /// replies awaited on [`REPLY_TOPIC`] for up to 30 s.
    pub fn dispatcher(&self) -> BusDispatcher<Bus> {
        BusDispatcher::new(self.bus.clone(), Bincode, REPLY_TOPIC)
            .route::<Order>()
            .route::<Payment>()
            .route::<Inventory>()
            .with_timeout(REPLY_TIMEOUT)
    }

    /// Starts a command service hosting `aggregates` as a task: it consumes the three
    /// `{category}-commands` topics in one consumer group, so several processes running it
    /// share the work.
    pub fn spawn_command_service(
        &self,
        aggregates: &Aggregates<PostgresEventStore>,
    ) -> ServiceHandle {
        service::spawn(
            CommandService::new(self.bus.clone(), Bincode)
                .with_group("checkout-aggregates")
                .route(std::sync::Arc::clone(&aggregates.orders))
                .route(std::sync::Arc::clone(&aggregates.payments))
                .route(std::sync::Arc::clone(&aggregates.inventory)),
        )
    }

    /// Starts the outbox relay (its checkpoint in the database) as a service, woken by the
    /// store's `LISTEN/NOTIFY`.
    pub fn spawn_relay(&self) -> ServiceHandle {
        service::spawn(Relay::new(
            self.store.clone(),
            self.bus.clone(),
            PostgresCheckpointStore::new(self.store.pool().clone()),
        ))
    }

    /// Joins consumer group `group` on the saga's input topics. The events committed before
    /// are delivered as the group's offsets say, but [`SagaInput::run_until_idle`] waits only
    /// for those committed from now on (a group that already consumed the older ones would
    /// never see them again).
    ///
    /// # Errors
    /// When the bus refuses the subscription.
    pub async fn subscribe_saga(&self, group: &str) -> Result<SagaInput, Error> {
        let topics: Vec<String> =
            INPUT_CATEGORIES.iter().map(|category| topic_for(category)).collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let subscription = self.bus.subscribe(Some(group), &topics).await?;
        let mut input = SagaInput {
            subscription,
            store: self.store.clone(),
            cursor: Position::START,
            pending: HashSet::new(),
            delivered: HashSet::new(),
        };
        input.read_to_head(false).await?;
        Ok(input)
    }
}

/// What [`SagaInput::handle_next`] did with a delivery.
#[derive(Debug)]
pub enum Handled {
    /// Fed to the saga and acknowledged; `None` when the saga had nothing to do with it.
    Delivered(Option<Progress>),
    /// The consumer reported a transient error instead of a delivery.
    Transient,
}

/// The saga's input from Kafka. It also follows the event store, to know which input events
/// were committed but not delivered yet: the saga is idle when none is left and no timer is due.
#[derive(Debug)]
pub struct SagaInput {
    subscription: Subscription,
    store: PostgresEventStore,
    /// How far the store was read.
    cursor: Position,
    /// Input events in the store, not delivered yet.
    pending: HashSet<Uuid>,
    /// Input events delivered before they were seen in the store.
    delivered: HashSet<Uuid>,
}

impl SagaInput {
    /// Feeds `saga` the deliveries until every input event committed so far (including those
    /// its own commands caused) was handled, then fires the due timers, and repeats while that
    /// produced anything. Each delivery is acknowledged after the saga handled it. The store's
    /// log is read up to its committed head each time, so a commit the gap-safe log still holds
    /// back (while an older transaction runs elsewhere on the server) is waited for, not missed.
    ///
    /// # Errors
    /// The first delivery that could not be decoded or handled (it is nacked, so the bus
    /// redelivers it), a bus failure, or a committed event not delivered within 30 s.
    pub async fn run_until_idle<S: EventStore + Clone, D: CommandDispatcher, T: TimerStore>(
        &mut self,
        saga: &SagaRunner<CheckoutSaga, S, D, T>,
    ) -> Result<Vec<Progress>, Error> {
        let mut done = Vec::new();
        loop {
            self.read_to_head(true).await?;
            if self.pending.is_empty() {
                let fired = saga.fire_due().await?;
                if !fired.is_empty() {
                    done.extend(fired);
                    continue;
                }
                return Ok(done);
            }
            let pending = self.pending.len();
            match self.handle_next(saga, DELIVERY_TIMEOUT).await? {
                Some(Handled::Delivered(progress)) => done.extend(progress),
                Some(Handled::Transient) => {}
                None => {
                    return Err(format!(
                        "{pending} committed events were not delivered within \
                         {DELIVERY_TIMEOUT:?}"
                    )
                    .into());
                }
            }
        }
    }

    /// Waits up to `within` for the next delivery, feeds it to `saga` and acknowledges it.
    /// `None` when nothing came in time.
    ///
    /// # Errors
    /// When the delivery could not be decoded or handled (it is nacked, so the bus redelivers
    /// it), or the subscription failed or closed.
    pub async fn handle_next<S: EventStore + Clone, D: CommandDispatcher, T: TimerStore>(
        &mut self,
        saga: &SagaRunner<CheckoutSaga, S, D, T>,
        within: Duration,
    ) -> Result<Option<Handled>, Error> {
        let delivery = match tokio::time::timeout(within, self.subscription.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err("the saga's subscription closed".into()),
            Ok(Some(Err(error))) if error.is_transient() => {
                tracing::warn!(%error, "transient consumer error; waiting on");
                return Ok(Some(Handled::Transient));
            }
            Ok(Some(Err(error))) => return Err(error.into()),
            Ok(Some(Ok(delivery))) => delivery,
        };
        let event = match delivery.event() {
            Ok(event) => event,
            Err(error) => {
                delivery.nack(&error);
                return Err(error.into());
            }
        };
        match saga.handle(&event).await {
            Ok(progress) => {
                delivery.ack();
                if !self.pending.remove(&event.event_id) {
                    self.delivered.insert(event.event_id);
                }
                Ok(Some(Handled::Delivered(progress)))
            }
            Err(error) => {
                delivery.nack(&error);
                Err(error.into())
            }
        }
    }

    /// Reads the store's log from the cursor up to the head committed when it starts, waiting
    /// while the gap-safe log still holds committed events back, so that none is missed. With
    /// `note_inputs`, the saga's input events among them are noted as due from the bus (unless
    /// already delivered); without, the cursor just moves past them.
    async fn read_to_head(&mut self, note_inputs: bool) -> Result<(), Error> {
        let head = self.store.head().await?;
        let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
        loop {
            let events = self.store.read_all(self.cursor, 500).await?;
            let Some(last) = events.last() else {
                if self.cursor >= head {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!(
                        "the log stayed behind its head {head} (read up to {}) for \
                         {DELIVERY_TIMEOUT:?}: a transaction on the server is not finishing",
                        self.cursor
                    )
                    .into());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            self.cursor = last.position;
            if !note_inputs {
                continue;
            }
            for event in &events {
                if INPUT_CATEGORIES.contains(&event.stream_id.category())
                    && !self.delivered.remove(&event.event_id)
                {
                    self.pending.insert(event.event_id);
                }
            }
        }
    }
}
