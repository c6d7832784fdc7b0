//! Kafka backend for Composable: the [`EventBus`](composable::bus::EventBus) on any
//! Kafka-protocol broker, through librdkafka (bundled, built from source by `rdkafka-sys`).
//!
//! In the flow of `docs/architecture.md` this is where committed events leave the process: the outbox
//! [`Relay`](composable::relay::Relay) publishes them through a [`KafkaBus`] to
//! `{category}-events`, keyed by stream id, and sagas and projections subscribe in consumer
//! groups. Delivery is at-least-once: an offset is committed only after the subscriber
//! acknowledged the delivery, failing deliveries are retried with backoff and then moved to a
//! dead-letter topic (`{topic}-dlq` by default) with the error in their headers.
//!
//! [`KafkaConfig`] builds the librdkafka settings (brokers, acks, compression, consumer group,
//! offset reset, buffer size) and passes any other librdkafka property through, for SASL and
//! TLS (enable the `ssl` feature for TLS and SASL/SCRAM; SASL/PLAIN works without it).
//! [`KafkaConfig::from_env`] and [`KafkaEnv`] take all of it from `KAFKA_*` environment
//! variables, so that one binary moves between Kafka, Redpanda, Amazon MSK and Azure Event Hubs
//! by configuration alone.
//!
//! ```no_run
//! use composable::checkpoint::InMemoryCheckpointStore;
//! use composable::relay::Relay;
//! use composable::{InMemoryEventStore, service};
//! use composable_kafka::{KafkaBus, KafkaConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = KafkaBus::new(KafkaConfig::new("127.0.0.1:9092"))?;
//! let store = InMemoryEventStore::new();
//! let relay = service::spawn(Relay::new(store.clone(), bus, InMemoryCheckpointStore::new()));
//! let _ = tokio::signal::ctrl_c().await;
//! relay.stop().await?;
//! # Ok(())
//! # }
//! ```

mod bus;
mod config;
mod env;
mod error;

pub use bus::KafkaBus;
pub use config::{Acks, CommitMode, Compression, KafkaConfig, OffsetReset};
pub use env::{KafkaEnv, KafkaEnvError};
pub use error::KafkaError;

/// Re-exported so callers can use the producer and configs without naming rdkafka themselves.
pub use rdkafka;
