//! Shared set-up of the Kafka tests: the broker named by `KAFKA_BROKERS` (and, for the relay
//! tests, the PostgreSQL server named by `DATABASE_URL`), unique topic names per test.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use composable::bus::{BusError, Delivery, Subscription};
use composable_kafka::{KafkaBus, KafkaConfig};
use composable_postgres::{PgConnectOptions, PostgresEventStore};
use sqlx::{Connection, PgConnection};

const HOW_TO_START_KAFKA: &str = "start a broker for these tests with `scripts/test` (it starts \
    and stops a private tansu broker), or in this shell with \
    `source scripts/lib/kafka.sh && kafka_start`, which exports KAFKA_BROKERS; or point \
    KAFKA_BROKERS at a Kafka or Redpanda you run";

const HOW_TO_START_POSTGRES: &str = "start PostgreSQL for these tests with `scripts/test`, or \
    in this shell with `source scripts/lib/postgres.sh && pg_start`, which exports DATABASE_URL";

/// The brokers the tests run against.
pub fn brokers() -> String {
    match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) if !brokers.is_empty() => brokers,
        _ => panic!("KAFKA_BROKERS is not set: {HOW_TO_START_KAFKA}"),
    }
}

/// How long a consumer that stops heartbeating keeps its place in its group, in these tests.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// Settings for the test broker: short timeouts so a failing test fails fast.
pub fn config() -> KafkaConfig {
    KafkaConfig::new(brokers())
        .message_timeout(Duration::from_secs(20))
        .session_timeout(SESSION_TIMEOUT)
        .linger(Duration::from_millis(1))
}

/// How long after killing a consumer with SIGKILL to wait before another joins its group.
///
/// Kafka and Redpanda expel the dead member once its session times out and rebalance. tansu 0.6,
/// the broker of the test scripts, expels it only when a request of the group arrives after
/// the session ran out, and a member that joins earlier makes the group's leader assign
/// partitions to the dead member too, which nobody then consumes. Joining after the session
/// (and a heartbeat interval, 3 s, and a second) expels the dead member with that join.
pub const REJOIN_AFTER_KILL: Duration = Duration::from_secs(SESSION_TIMEOUT.as_secs() + 3 + 1);

/// A bus on the test broker, checked to be reachable.
pub async fn bus_with(config: KafkaConfig) -> KafkaBus {
    let brokers = config.brokers().to_owned();
    let bus = KafkaBus::new(config).unwrap_or_else(|error| panic!("configure the bus: {error}"));
    if let Err(error) = bus.check_connection(Duration::from_secs(10)).await {
        panic!(
            "cannot reach the Kafka broker at KAFKA_BROKERS={brokers}: {error}; {HOW_TO_START_KAFKA}"
        );
    }
    bus
}

pub async fn bus() -> KafkaBus {
    bus_with(config()).await
}

/// A topic name no other test (or earlier run against the same broker) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// Creates `topics` with `partitions` partitions each.
pub async fn create_topics(bus: &KafkaBus, topics: &[&str], partitions: i32) {
    bus.create_topics(topics, partitions, 1)
        .await
        .unwrap_or_else(|error| panic!("create topics {topics:?}: {error}"));
}

/// The next delivery within `within`, or a panic naming what was awaited.
pub async fn next(subscription: &mut Subscription, within: Duration, what: &str) -> Delivery {
    loop {
        match tokio::time::timeout(within, subscription.next()).await {
            Err(_) => panic!("no delivery of {what} within {within:?}"),
            Ok(None) => panic!("the subscription closed while waiting for {what}"),
            Ok(Some(Err(BusError::Unavailable { source, .. }))) => {
                eprintln!("transient consumer error while waiting for {what}: {source}");
            }
            Ok(Some(Err(error))) => panic!("consumer error while waiting for {what}: {error}"),
            Ok(Some(Ok(delivery))) => return delivery,
        }
    }
}

fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("DATABASE_URL is not set: {HOW_TO_START_POSTGRES}"),
    }
}

pub fn admin_options() -> PgConnectOptions {
    let url = database_url();
    url.parse().unwrap_or_else(|error| panic!("DATABASE_URL `{url}` is not a valid URL: {error}"))
}

/// A fresh, migrated PostgreSQL database for one test, and a store on it. The database is left
/// to the test server, which `pg_stop` removes whole.
pub async fn fresh_store() -> PostgresEventStore {
    let name = format!("composable_kafka_test_{}", uuid::Uuid::now_v7().simple());
    let options = admin_options();
    let connect = PgConnection::connect_with(&options);
    let mut admin = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => panic!(
            "cannot reach PostgreSQL at DATABASE_URL={}: {error}; {HOW_TO_START_POSTGRES}",
            database_url()
        ),
        Err(_) => panic!(
            "PostgreSQL at DATABASE_URL={} did not answer within 10 s; {HOW_TO_START_POSTGRES}",
            database_url()
        ),
    };
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
    let store = PostgresEventStore::builder()
        .connect_options(admin_options().database(&name))
        .max_connections(8)
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connect to {name}: {error}"));
    store.migrate().await.unwrap_or_else(|error| panic!("migrate {name}: {error}"));
    store
}
