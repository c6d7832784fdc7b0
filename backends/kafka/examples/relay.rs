//! The outbox relay as its own process: PostgreSQL (`DATABASE_URL`) to Kafka (`KAFKA_BROKERS`),
//! checkpointed in PostgreSQL under `RELAY_NAME` (default `relay`), until Ctrl-C.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/app KAFKA_BROKERS=127.0.0.1:9092 \
//!     cargo run -p composable-kafka --example relay
//! ```

use std::time::Duration;

use composable::relay::Relay;
use composable_kafka::{KafkaBus, KafkaConfig};
use composable_postgres::{PostgresCheckpointStore, PostgresEventStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database_url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let brokers = std::env::var("KAFKA_BROKERS").map_err(|_| "set KAFKA_BROKERS")?;
    let name = std::env::var("RELAY_NAME").unwrap_or_else(|_| "relay".into());

    let store = PostgresEventStore::connect(&database_url).await?;
    store.migrate().await?;
    let checkpoints = PostgresCheckpointStore::new(store.pool().clone());
    let bus = KafkaBus::new(KafkaConfig::new(brokers))?;
    bus.check_connection(Duration::from_secs(10)).await?;

    // Woken by LISTEN/NOTIFY after every append; the poll only covers a missed notification.
    let relay = composable::service::spawn(Relay::named(name, store, bus, checkpoints));
    let _ = tokio::signal::ctrl_c().await;
    relay.stop().await?;
    Ok(())
}
