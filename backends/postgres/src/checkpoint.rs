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
    tables: &'static Tables,
}

impl PostgresCheckpointStore {
    /// Checkpoints in the database of `pool`, whose migrations have run
    /// ([`crate::PostgresEventStore::migrate`]).
    pub fn new(pool: PgPool) -> Self {
        Self { pool, tables: &EVENT_STORE }
    }

    /// The projections' checkpoints in a read database ([`crate::PostgresReadStore`]).
    pub(crate) fn of_read_models(pool: PgPool) -> Self {
        Self { pool, tables: &READ_MODELS }
    }
}

/// The statements on one pair of tables: checkpoints and their claims.
#[derive(Debug)]
pub(crate) struct Tables {
    load: &'static str,
    save: &'static str,
    /// `$1` name, `$2` transaction, `$3` position after the batch, `$4` and `$5` before it:
    /// moves the checkpoint only from where the batch began.
    pub(crate) advance: &'static str,
    /// `$1` name, `$2` transaction, `$3` position: the first save, only when there is none.
    pub(crate) first: &'static str,
    claim: &'static str,
    release: &'static str,
}

macro_rules! tables {
    ($checkpoints:literal, $claims:literal) => {
        Tables {
            load: concat!("SELECT transaction_id, position FROM ", $checkpoints, " WHERE name = $1"),
            save: concat!(
                "INSERT INTO ", $checkpoints, " (name, transaction_id, position) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET transaction_id = EXCLUDED.transaction_id, \
                     position = EXCLUDED.position, updated_at = now()"
            ),
            advance: concat!(
                "UPDATE ", $checkpoints, " SET transaction_id = $2, position = $3, updated_at = now() \
                 WHERE name = $1 AND transaction_id = $4 AND position = $5"
            ),
            first: concat!(
                "INSERT INTO ", $checkpoints, " (name, transaction_id, position) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING"
            ),
            claim: concat!(
                "INSERT INTO ", $claims, " AS claims (name, holder, until) \
                 VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
                 ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until \
                 WHERE claims.holder = EXCLUDED.holder OR claims.until < now() \
                 RETURNING holder"
            ),
            release: concat!("DELETE FROM ", $claims, " WHERE name = $1 AND holder = $2"),
        }
    };
}

/// The event store's database: `checkpoints`, `checkpoint_claims`.
static EVENT_STORE: Tables = tables!("checkpoints", "checkpoint_claims");

/// A read database: `projection_checkpoints`, `projection_claims`.
pub(crate) static READ_MODELS: Tables = tables!("projection_checkpoints", "projection_claims");

/// A position as the two bigints the tables keep.
pub(crate) fn position_columns(position: Position) -> Option<(i64, i64)> {
    Some((i64::try_from(position.transaction()).ok()?, i64::try_from(position.sequence()).ok()?))
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
        let position: Option<(i64, i64)> = sqlx::query_as(self.tables.load)
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
        let (transaction, sequence) = position_columns(position).ok_or_else(too_large)?;
        sqlx::query(self.tables.save)
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
        let claimed: Option<(Uuid,)> = sqlx::query_as(self.tables.claim)
            .bind(name)
            .bind(holder)
            .bind(ttl_ms)
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| checkpoint_error("claim", name, error))?;
        Ok(claimed.is_some())
    }

    async fn release(&self, name: &str, holder: Uuid) -> Result<(), CheckpointError> {
        sqlx::query(self.tables.release)
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(|error| checkpoint_error("release", name, error))?;
        Ok(())
    }
}
