//! The checkout's services on PostgreSQL and Kafka, as configuration of the application host:
//! the events, the saga's timers and every consumer's checkpoint in one database; the outbox
//! relay, the command service hosting the three aggregates, the saga reading its events and
//! sending its commands through the broker, and the board ([`PostgresBoard`]), a projection into
//! the same database. [`app`] is all of it; `src/bin/checkout-service.rs` runs it as a process,
//! in any subset of its roles (`relay`, `commands`, `checkout`, `board`).

use std::time::Duration;

use composable::bus::Namespaced;
use composable::host::{App, AppBuilder};
use composable::{BoxError, Clock};
use composable_kafka::{KafkaBus, KafkaConfig};
use composable_postgres::{
    PostgresCheckpointStore, PostgresEventStore, PostgresReadStore, PostgresTimerStore,
};

use crate::board::PostgresBoard;
use crate::{Aggregates, CheckoutSaga};

/// The broker, every topic and group under a prefix (empty in production, one per run in tests).
pub type Bus = Namespaced<KafkaBus>;

/// Partitions of each topic [`create_topics`] creates.
pub const PARTITIONS: i32 = 3;

/// How long a consumer of the checkout that stops heartbeating keeps its place in its group.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// Kafka settings for the checkout: short batching and fetch waits, since each saga step waits
/// for the previous one's reply to come back from the broker. `checkout-service` puts the
/// environment's settings over these ([`KafkaConfig::with_env`]).
pub fn kafka_config(brokers: &str) -> KafkaConfig {
    KafkaConfig::new(brokers)
        .linger(Duration::from_millis(1))
        .message_timeout(Duration::from_secs(20))
        .session_timeout(SESSION_TIMEOUT)
        .set("fetch.wait.max.ms", "5")
}

/// The broker `config` names, checked to answer, with every name under `prefix`.
///
/// # Errors
/// When the client cannot be created or the broker does not answer within 10 s.
pub async fn connect_bus(config: KafkaConfig, prefix: &str) -> Result<Bus, BoxError> {
    let brokers = config.brokers().to_owned();
    let kafka = KafkaBus::new(config)?;
    kafka
        .check_connection(Duration::from_secs(10))
        .await
        .map_err(|error| format!("cannot reach the Kafka broker at {brokers}: {error}"))?;
    Ok(Namespaced::new(kafka, prefix))
}

/// Migrates `store`'s database: the event store's tables and the read store's (the board's
/// documents and checkpoint), both of which [`app`] needs.
///
/// # Errors
/// When a migration fails.
pub async fn migrate(store: &PostgresEventStore) -> Result<(), BoxError> {
    store.migrate().await?;
    read_store(store).migrate().await?;
    Ok(())
}

/// The read store the board writes to: `store`'s database, through its pool.
pub fn read_store(store: &PostgresEventStore) -> PostgresReadStore {
    PostgresReadStore::new(store.pool().clone())
}

/// The checkout on `store` and `bus`, time from `clock`, with `runners` hosted behind their
/// command topics and the board kept in `store`'s database (migrated with [`migrate`]): build it
/// with [`AppBuilder::build`] (after choosing roles, if not all).
pub fn app(
    store: &PostgresEventStore,
    bus: &Bus,
    runners: &Aggregates<PostgresEventStore>,
    clock: impl Clock,
) -> AppBuilder<PostgresEventStore, PostgresTimerStore, Bus> {
    let pool = store.pool().clone();
    App::on_bus("checkout", store.clone(), bus.clone())
        .timers(PostgresTimerStore::new(pool.clone()))
        .checkpoints(PostgresCheckpointStore::new(pool))
        .clock(clock)
        .aggregate(&runners.orders)
        .aggregate(&runners.payments)
        .aggregate(&runners.inventory)
        .saga::<CheckoutSaga>()
        .projection(PostgresBoard, read_store(store))
}

/// Creates `topics` (from [`App::topics`](composable::host::App::topics)) on the broker, under
/// the bus's prefix; topics that exist are left as they are.
///
/// # Errors
/// When the broker refuses.
pub async fn create_topics(bus: &Bus, topics: &[String]) -> Result<(), BoxError> {
    let names: Vec<String> = topics.iter().map(|topic| bus.name(topic)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    bus.inner().create_topics(&names, PARTITIONS, 1).await?;
    Ok(())
}
