//! PostgreSQL backend for Composable: the source of truth of an event-sourced system.
//!
//! [`PostgresEventStore`] implements [`composable::EventStore`] with the same semantics as
//! [`composable::InMemoryEventStore`] (one conformance suite runs against both):
//!
//! * an append is one statement (one round trip) for any number of events, all-or-nothing; it
//!   checks the expected version itself, so a refused append writes nothing;
//! * a retried append (same event ids, same place, same content) returns the original result;
//! * [`read_all`](composable::EventStore::read_all) is gap-safe: it never returns a position
//!   while a transaction that could still commit a lower one is running;
//! * snapshots are replaced only by snapshots of the same or a newer version.
//!
//! [`PostgresTimerStore`] keeps saga timeouts in the `timers` table of the same database, so a
//! timeout due while no process runs fires when one starts again.
//! [`PostgresCheckpointStore`] keeps the checkpoints of the log's consumers — the outbox relay,
//! sagas, projections — in the same database ([`composable::checkpoint`]). Readers of the log
//! are woken by `LISTEN/NOTIFY` after every append ([`composable::EventStore::appends`]), in this
//! process and in others.
//!
//! The schema ships inside the crate as migrations: run [`PostgresEventStore::migrate`] once at
//! start-up (it is idempotent). `docs/adr/0001-postgres-event-store.md` explains the schema.
//!
//! ```no_run
//! use composable::{EventStore, StreamId};
//! use composable_postgres::PostgresEventStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresEventStore::builder()
//!     .url("postgres://postgres@127.0.0.1:5432/app")?
//!     .max_connections(16)
//!     .connect()
//!     .await?;
//! store.migrate().await?;
//! let version = store.stream_version(&StreamId::new("order", 42)?).await?;
//! # Ok(())
//! # }
//! ```

mod checkpoint;
mod config;
mod error;
mod group;
mod notify;
mod read;
mod rows;
mod store;
mod timers;

pub use checkpoint::PostgresCheckpointStore;
pub use config::PostgresEventStoreBuilder;
pub use error::PostgresError;
pub use read::{DocumentForm, PostgresBatch, PostgresReadStore, READ_MIGRATOR, ReadModelError};
pub use store::PostgresEventStore;
pub use timers::PostgresTimerStore;

/// The crate's embedded migrations, for callers that run them with their own tooling.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Re-exported so callers can build pools and connect options without naming sqlx themselves.
pub use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
