//! Checkpoints on PostgreSQL: the outbox relay's (and any global-log reader's) durable position,
//! in the `checkpoints` table the migrations create.

use std::time::Duration;

use composable::Position;
use composable::checkpoint::{CheckpointError, CheckpointStore};
use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::error::is_transient;

/// A [`CheckpointStore`] on PostgreSQL, usually in the event store's own database. Cheap to
/// clone: clones share one pool.
///
/// ```no_run
/// use composable::relay::Relay;
/// use composable::service;
/// use composable::bus::InMemoryBus;
/// use composable_postgres::{PostgresCheckpointStore, PostgresEventStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresEventStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// store.migrate().await?;
/// let checkpoints = PostgresCheckpointStore::new(store.pool().clone());
/// let relay = Relay::named("orders-relay", store, InMemoryBus::new(), checkpoints);
/// let relay = service::spawn(relay);
/// let _ = tokio::signal::ctrl_c().await;
/// relay.stop().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresCheckpointStore {
    pool: PgPool,
}

impl PostgresCheckpointStore {
    /// Checkpoints in the database of `pool`, whose migrations have run
    /// ([`crate::PostgresEventStore::migrate`]).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn checkpoint_error(operation: &'static str, name: &str, error: sqlx::Error) -> CheckpointError {
    if is_transient(&error) {
        CheckpointError::Unavailable { operation, name: name.to_owned(), source: Box::new(error) }
    } else {
        CheckpointError::Backend { operation, name: name.to_owned(), source: Box::new(error) }
    }
}

impl CheckpointStore for PostgresCheckpointStore {
    async fn load(&self, name: &str) -> Result<Position, CheckpointError> {
        let position: Option<(i64, i64)> =
            sqlx::query_as("SELECT transaction_id, position FROM checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(|error| checkpoint_error("load", name, error))?;
        let Some((transaction, sequence)) = position else {
            return Ok(Position::START);
        };
        match (u64::try_from(transaction), u64::try_from(sequence)) {
            (Ok(transaction), Ok(sequence)) => Ok(Position::new(transaction, sequence)),
            _ => Err(CheckpointError::Corrupt {
                name: name.to_owned(),
                reason: format!("negative position {sequence} of transaction {transaction}"),
            }),
        }
    }

    async fn save(&self, name: &str, position: Position) -> Result<(), CheckpointError> {
        let too_large = || CheckpointError::Backend {
            operation: "save",
            name: name.to_owned(),
            source: format!("position {position} does not fit two bigints").into(),
        };
        let transaction = i64::try_from(position.transaction()).map_err(|_| too_large())?;
        let sequence = i64::try_from(position.sequence()).map_err(|_| too_large())?;
        sqlx::query(
            "INSERT INTO checkpoints (name, transaction_id, position) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET transaction_id = EXCLUDED.transaction_id, \
                 position = EXCLUDED.position, updated_at = now()",
        )
        .bind(name)
        .bind(transaction)
        .bind(sequence)
        .execute(&self.pool)
        .await
        .map_err(|error| checkpoint_error("save", name, error))?;
        Ok(())
    }

    async fn claim(
        &self,
        name: &str,
        holder: Uuid,
        ttl: Duration,
    ) -> Result<bool, CheckpointError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let claimed: Option<(Uuid,)> = sqlx::query_as(
            "INSERT INTO checkpoint_claims (name, holder, until) \
             VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until \
             WHERE checkpoint_claims.holder = EXCLUDED.holder OR checkpoint_claims.until < now() \
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(ttl_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| checkpoint_error("claim", name, error))?;
        Ok(claimed.is_some())
    }

    async fn release(&self, name: &str, holder: Uuid) -> Result<(), CheckpointError> {
        sqlx::query("DELETE FROM checkpoint_claims WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(|error| checkpoint_error("release", name, error))?;
        Ok(())
    }
}
