//! Read models on PostgreSQL: the user's own tables, written in the transaction the projection
//! runner applies a batch in, and typed documents, with the projection's checkpoint moved in
//! that same transaction.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::LazyLock;

use composable::codec::{Bincode, Codec};
use composable::consumer::{Checkpoint, Saved};
use composable::projection::{DeadLetter, DocumentError, ReadStore, collection_name};
use composable::stream::{Position, StreamId, Version};
use composable::{EventMetadata, RecordedEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use crate::checkpoint::{PostgresCheckpointStore, READ_MODELS, position_columns};
use crate::error::{PostgresError, is_transient};

/// The read database's own migrations: checkpoints, claims and documents of the projections.
/// They are tracked in `_composable_read_migrations`, apart from the event store's and the
/// application's own (`_sqlx_migrations`), so all three can share one database.
pub static READ_MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("./read-migrations");
    migrator.dangerous_set_table_name("_composable_read_migrations");
    migrator
});

/// A read store on PostgreSQL: the event store's database or another one ("true CQRS
/// separation"). A projection writing here gets a [`PostgresBatch`] — a transaction — for each
/// batch of events: its handlers write the user's tables with SQL through
/// [`PostgresBatch::connection`], or typed documents through [`PostgresBatch::put`], and the
/// runner commits the transaction together with the projection's checkpoint, only if the
/// checkpoint is still where the batch began. So each event changes the read model exactly
/// once, crashes and racing processes included.
///
/// ```no_run
/// use composable_postgres::PostgresReadStore;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let read = PostgresReadStore::connect("postgres://postgres@127.0.0.1:5432/reads").await?;
/// read.migrate().await?; // the projections' tables; the application migrates its own
/// let total: Option<u64> = read.get("spent", "ada").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresReadStore {
    pool: PgPool,
}

/// Why the read store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadModelError {
    /// A statement failed; `transient` says whether the database was unreachable (try again)
    /// rather than refusing it.
    #[error("read store: {operation} failed: {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// Whether the same operation may succeed later.
        transient: bool,
        /// What the database said.
        #[source]
        source: sqlx::Error,
    },
    /// A bad collection name, or a document that would not encode or decode.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// A position does not fit the table's two bigints.
    #[error("checkpoint `{0}`: the position does not fit two bigints")]
    PositionTooLarge(String),
    /// A stored dead letter cannot be read back as an event.
    #[error("a dead letter of projection `{projection}` is corrupt: {reason}")]
    CorruptDeadLetter {
        /// The projection.
        projection: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn database(operation: &'static str) -> impl FnOnce(sqlx::Error) -> ReadModelError {
    move |source| ReadModelError::Database { operation, transient: is_transient(&source), source }
}

impl PostgresReadStore {
    /// A store on `pool`'s database; run [`migrate`](Self::migrate) before first use.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Connects to the read database at `url` with a pool of up to 16 connections.
    ///
    /// # Errors
    /// [`PostgresError::InvalidUrl`], [`PostgresError::Connect`].
    pub async fn connect(url: &str) -> Result<Self, PostgresError> {
        let options = PgConnectOptions::from_str(url).map_err(PostgresError::InvalidUrl)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(options)
            .await
            .map_err(PostgresError::Connect)?;
        Ok(Self::new(pool))
    }

    /// The pool: the application's own queries of its read tables share it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the projections' tables ([`READ_MIGRATOR`]). Idempotent, and safe from several
    /// processes at once.
    ///
    /// # Errors
    /// [`PostgresError::Migrate`].
    pub async fn migrate(&self) -> Result<(), PostgresError> {
        READ_MIGRATOR.run(&self.pool).await.map_err(PostgresError::Migrate)
    }

    /// The document `key` of `collection`, as committed.
    ///
    /// # Errors
    /// A bad collection name, a value that is not a `T`, or the database.
    pub async fn get<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>, ReadModelError> {
        let mut connection = self.pool.acquire().await.map_err(database("get"))?;
        get(&mut connection, collection, key).await
    }

    /// Whether `collection` has a document `key`.
    ///
    /// # Errors
    /// A bad collection name, or the database.
    pub async fn exists(&self, collection: &str, key: &str) -> Result<bool, ReadModelError> {
        collection_name(collection)?;
        let found: Option<(i32,)> =
            sqlx::query_as("SELECT 1 FROM read_documents WHERE collection = $1 AND key = $2")
                .bind(collection)
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(database("exists"))?;
        Ok(found.is_some())
    }

    /// The documents of `collection` whose keys start with `prefix`, in key (byte) order.
    ///
    /// # Errors
    /// A bad collection name, a value that is not a `T`, or the database.
    pub async fn list<T: DeserializeOwned>(
        &self,
        collection: &str,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, ReadModelError> {
        collection_name(collection)?;
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT key, value FROM read_documents \
             WHERE collection = $1 AND starts_with(key, $2) ORDER BY key",
        )
        .bind(collection)
        .bind(prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(database("list"))?;
        rows.into_iter()
            .map(|(key, bytes)| {
                let value = decode(collection, &key, &bytes)?;
                Ok((key, value))
            })
            .collect()
    }
}

fn decode<T: DeserializeOwned>(
    collection: &str,
    key: &str,
    bytes: &[u8],
) -> Result<T, ReadModelError> {
    Bincode.decode(bytes).map_err(|source| {
        ReadModelError::Document(DocumentError::Codec {
            collection: collection.to_owned(),
            key: key.to_owned(),
            source,
        })
    })
}

async fn get<T: DeserializeOwned>(
    connection: &mut PgConnection,
    collection: &str,
    key: &str,
) -> Result<Option<T>, ReadModelError> {
    collection_name(collection)?;
    let row: Option<(Vec<u8>,)> =
        sqlx::query_as("SELECT value FROM read_documents WHERE collection = $1 AND key = $2")
            .bind(collection)
            .bind(key)
            .fetch_optional(&mut *connection)
            .await
            .map_err(database("get"))?;
    row.map(|(bytes,)| decode(collection, key, &bytes)).transpose()
}

/// One batch of a projection on PostgreSQL: a transaction. Everything written through it —
/// the user's SQL on [`connection`](Self::connection), documents — commits together with the
/// projection's checkpoint, or not at all.
#[derive(Debug)]
pub struct PostgresBatch {
    transaction: Transaction<'static, Postgres>,
}

impl PostgresBatch {
    /// The transaction's connection, for the handler's own SQL:
    /// `sqlx::query("...").bind(..).execute(batch.connection()).await`.
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.transaction
    }

    /// The document `key` of `collection`, as this batch sees it (its own writes included).
    ///
    /// # Errors
    /// A bad collection name, a value that is not a `T`, or the database.
    pub async fn get<T: DeserializeOwned>(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>, ReadModelError> {
        get(&mut self.transaction, collection, key).await
    }

    /// Writes `value` as document `key` of `collection`.
    ///
    /// # Errors
    /// A bad collection name, a value the codec cannot encode, or the database.
    pub async fn put<T: Serialize + Sync>(
        &mut self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<(), ReadModelError> {
        collection_name(collection)?;
        let bytes = Bincode.encode(value).map_err(|source| DocumentError::Codec {
            collection: collection.to_owned(),
            key: key.to_owned(),
            source,
        })?;
        sqlx::query(
            "INSERT INTO read_documents (collection, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (collection, key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(collection)
        .bind(key)
        .bind(bytes)
        .execute(&mut *self.transaction)
        .await
        .map_err(database("put"))?;
        Ok(())
    }

    /// Deletes document `key` of `collection` (nothing when there is none).
    ///
    /// # Errors
    /// A bad collection name, or the database.
    pub async fn delete(&mut self, collection: &str, key: &str) -> Result<(), ReadModelError> {
        collection_name(collection)?;
        sqlx::query("DELETE FROM read_documents WHERE collection = $1 AND key = $2")
            .bind(collection)
            .bind(key)
            .execute(&mut *self.transaction)
            .await
            .map_err(database("delete"))?;
        Ok(())
    }
}

impl ReadStore for PostgresReadStore {
    type Batch = PostgresBatch;
    type Error = ReadModelError;
    type Checkpoints = PostgresCheckpointStore;

    async fn begin(&self) -> Result<PostgresBatch, ReadModelError> {
        let transaction = self.pool.begin().await.map_err(database("begin"))?;
        Ok(PostgresBatch { transaction })
    }

    async fn commit(
        &self,
        batch: PostgresBatch,
        at: Checkpoint<'_>,
    ) -> Result<Saved, ReadModelError> {
        let mut transaction = batch.transaction;
        let too_large = || ReadModelError::PositionTooLarge(at.name.to_owned());
        let (to_transaction, to_position) = position_columns(at.to).ok_or_else(too_large)?;
        let (after_transaction, after_position) =
            position_columns(at.after).ok_or_else(too_large)?;
        // Only from where the batch began: a second process that ran the same batch finds the
        // row moved (or, for the first batch, already inserted) and changes nothing. Its row
        // lock makes the loser wait for the winner's commit, then see the new position.
        let moved = sqlx::query(READ_MODELS.advance)
            .bind(at.name)
            .bind(to_transaction)
            .bind(to_position)
            .bind(after_transaction)
            .bind(after_position)
            .execute(&mut *transaction)
            .await
            .map_err(database("save the checkpoint"))?
            .rows_affected();
        let saved = if moved == 1 {
            true
        } else if at.after == Position::START {
            sqlx::query(READ_MODELS.first)
                .bind(at.name)
                .bind(to_transaction)
                .bind(to_position)
                .execute(&mut *transaction)
                .await
                .map_err(database("save the first checkpoint"))?
                .rows_affected()
                == 1
        } else {
            false
        };
        if !saved {
            transaction.rollback().await.map_err(database("roll back"))?;
            return Ok(Saved::Moved);
        }
        transaction.commit().await.map_err(database("commit"))?;
        Ok(Saved::ByHandler)
    }

    async fn commit_batch(&self, batch: PostgresBatch) -> Result<(), ReadModelError> {
        batch.transaction.commit().await.map_err(database("commit"))
    }

    fn checkpoints(&self) -> PostgresCheckpointStore {
        PostgresCheckpointStore::of_read_models(self.pool.clone())
    }

    async fn park(batch: &mut PostgresBatch, letter: DeadLetter) -> Result<(), ReadModelError> {
        let event = &letter.event;
        let (transaction, position) = position_columns(event.position)
            .ok_or_else(|| ReadModelError::PositionTooLarge(letter.projection.clone()))?;
        let stream_version = i64::try_from(event.stream_version.0)
            .map_err(|_| ReadModelError::PositionTooLarge(letter.projection.clone()))?;
        sqlx::query(
            "INSERT INTO projection_dead_letters (projection, transaction_id, position, stream_id, \
                 stream_version, event_id, event_name, event_version, payload_format, payload, \
                 correlation_id, causation_id, occurred_at, recorded_at, reason, parked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&letter.projection)
        .bind(transaction)
        .bind(position)
        .bind(event.stream_id.as_str())
        .bind(stream_version)
        .bind(event.event_id)
        .bind(&event.name)
        .bind(i32::from(event.version))
        .bind(&event.format)
        .bind(&event.payload)
        .bind(event.metadata.correlation_id)
        .bind(event.metadata.causation_id)
        .bind(event.metadata.occurred_at)
        .bind(event.recorded_at)
        .bind(&letter.reason)
        .bind(letter.parked_at)
        .execute(&mut *batch.transaction)
        .await
        .map_err(database("park an event"))?;
        Ok(())
    }

    async fn unpark(
        batch: &mut PostgresBatch,
        projection: &str,
        event_id: Uuid,
    ) -> Result<bool, ReadModelError> {
        let removed = sqlx::query(
            "DELETE FROM projection_dead_letters WHERE projection = $1 AND event_id = $2",
        )
        .bind(projection)
        .bind(event_id)
        .execute(&mut *batch.transaction)
        .await
        .map_err(database("unpark an event"))?
        .rows_affected();
        Ok(removed == 1)
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, ReadModelError> {
        let rows = sqlx::query(
            "SELECT transaction_id, position, stream_id, stream_version, event_id, event_name, \
                 event_version, payload_format, payload, correlation_id, causation_id, \
                 occurred_at, recorded_at, reason, parked_at \
             FROM projection_dead_letters WHERE projection = $1 \
             ORDER BY transaction_id, position",
        )
        .bind(projection)
        .fetch_all(&self.pool)
        .await
        .map_err(database("read the dead letters"))?;
        rows.iter().map(|row| dead_letter(projection, row)).collect()
    }

    async fn parked_streams(&self, projection: &str) -> Result<BTreeSet<String>, ReadModelError> {
        let streams: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT stream_id FROM projection_dead_letters WHERE projection = $1",
        )
        .bind(projection)
        .fetch_all(&self.pool)
        .await
        .map_err(database("read the parked streams"))?;
        Ok(streams.into_iter().map(|(stream,)| stream).collect())
    }
}

/// A dead letter from its row; a row that cannot be one is [`ReadModelError::CorruptDeadLetter`].
fn dead_letter(projection: &str, row: &PgRow) -> Result<DeadLetter, ReadModelError> {
    let corrupt = |reason: String| ReadModelError::CorruptDeadLetter {
        projection: projection.to_owned(),
        reason,
    };
    let read = |error: sqlx::Error| corrupt(error.to_string());
    let transaction: i64 = row.try_get("transaction_id").map_err(read)?;
    let position: i64 = row.try_get("position").map_err(read)?;
    let (Ok(transaction), Ok(position)) = (u64::try_from(transaction), u64::try_from(position))
    else {
        return Err(corrupt(format!("negative position {position} of transaction {transaction}")));
    };
    let stream: String = row.try_get("stream_id").map_err(read)?;
    let stream_id = StreamId::parse(stream.as_str())
        .map_err(|error| corrupt(format!("stream `{stream}`: {error}")))?;
    let stream_version: i64 = row.try_get("stream_version").map_err(read)?;
    let event_version: i32 = row.try_get("event_version").map_err(read)?;
    let event = RecordedEvent {
        position: Position::new(transaction, position),
        stream_id,
        stream_version: Version(
            u64::try_from(stream_version)
                .map_err(|_| corrupt(format!("stream version {stream_version}")))?,
        ),
        event_id: row.try_get("event_id").map_err(read)?,
        name: row.try_get("event_name").map_err(read)?,
        version: u16::try_from(event_version)
            .map_err(|_| corrupt(format!("event version {event_version}")))?,
        format: row.try_get("payload_format").map_err(read)?,
        payload: row.try_get("payload").map_err(read)?,
        metadata: EventMetadata {
            correlation_id: row.try_get("correlation_id").map_err(read)?,
            causation_id: row.try_get("causation_id").map_err(read)?,
            occurred_at: row.try_get("occurred_at").map_err(read)?,
        },
        recorded_at: row.try_get("recorded_at").map_err(read)?,
    };
    Ok(DeadLetter {
        projection: projection.to_owned(),
        event,
        reason: row.try_get("reason").map_err(read)?,
        parked_at: row.try_get("parked_at").map_err(read)?,
    })
}
