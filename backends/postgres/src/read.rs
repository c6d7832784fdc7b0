//! Read models on PostgreSQL: the user's own tables, written in the transaction the projection
//! runner applies a batch in, and typed documents, with the projection's checkpoint moved in
//! that same transaction.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use composable::codec::CodecError;
use composable::consumer::{Checkpoint, Saved};
use composable::projection::{
    DeadLetter, DocumentError, DocumentStore, ReadStore, Scope, StreamGuards, collection_name,
    decode_document, encode_document,
};
use composable::stream::{Position, StreamId, Version};
use composable::{EventMetadata, RecordedEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};
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
    /// How its typed documents are kept.
    form: DocumentForm,
    /// What this process has registered already.
    registered: Arc<Mutex<Registered>>,
}

/// How a [`PostgresReadStore`] keeps its typed documents in `read_documents`: each row holds
/// one form, and a store reads only its own (another form is
/// [`ReadModelError::DocumentForm`]). To change the form of a projection's documents, give it
/// a new [`VERSION`](composable::projection::Projection::VERSION) on a store of the new form: it
/// builds its documents beside the old ones and takes over once caught up.
///
/// ```no_run
/// use composable_postgres::{DocumentForm, PostgresReadStore};
///
/// # async fn run(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let read = PostgresReadStore::new(pool).with_documents(DocumentForm::Jsonb);
/// read.migrate().await?;
/// // The served documents, as SQL sees them: one view over every projection's active version.
/// let open: Vec<(String,)> = sqlx::query_as(
///     "SELECT key FROM served_documents WHERE collection = 'orders' AND doc->>'status' = 'open'",
/// )
/// .fetch_all(read.pool())
/// .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DocumentForm {
    /// The [`Bincode`](composable::Bincode) codec's bytes, in `value bytea`: compact and fast
    /// to write and read, opaque to SQL. The default.
    #[default]
    Bytes,
    /// JSON, in `doc jsonb`: larger and slower to write, but SQL can read and index it
    /// (`doc->>'status'`, an index of the application's own on an expression of `doc`). JSON
    /// holds what a serde data model maps to it: maps need string keys, and PostgreSQL's
    /// `jsonb` refuses the NUL character in strings — both are a
    /// [`DocumentError::Codec`] when the document is written, before anything is sent. JSON
    /// has no number for a float that is not finite: serde writes NaN and infinities as
    /// `null`, which reads back only into an `Option` — keep such values as bytes.
    Jsonb,
}

impl DocumentForm {
    /// The format named in its codec errors.
    const fn format(self) -> &'static str {
        match self {
            Self::Bytes => composable::Bincode::FORMAT,
            Self::Jsonb => "jsonb",
        }
    }

    fn encode<T: Serialize + ?Sized>(
        self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<Vec<u8>, DocumentError> {
        if self == Self::Bytes {
            return encode_document(collection, key, value);
        }
        let codec = |source| DocumentError::Codec {
            collection: collection.to_owned(),
            key: key.to_owned(),
            source,
        };
        let json = serde_json::to_vec(value)
            .map_err(|error| codec(CodecError::encode(self.format(), error)))?;
        if escapes_nul(&json) {
            return Err(codec(CodecError::encode(
                self.format(),
                "a string holds the NUL character, which PostgreSQL's jsonb cannot store; \
                 keep such documents as bytes (DocumentForm::Bytes) or leave NUL out",
            )));
        }
        Ok(json)
    }

    fn decode<T: DeserializeOwned>(
        self,
        collection: &str,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, DocumentError> {
        if self == Self::Bytes {
            return decode_document(collection, key, bytes);
        }
        serde_json::from_slice(bytes).map_err(|error| DocumentError::Codec {
            collection: collection.to_owned(),
            key: key.to_owned(),
            source: CodecError::decode(self.format(), error),
        })
    }

    /// The bytes of a stored row in this form: `value` for bytes, `doc`'s text for JSONB.
    fn of_row(
        self,
        collection: &str,
        key: &str,
        value: Option<Vec<u8>>,
        doc: Option<String>,
    ) -> Result<Vec<u8>, ReadModelError> {
        let wrong = |stored: Self| ReadModelError::DocumentForm {
            collection: collection.to_owned(),
            key: key.to_owned(),
            stored,
            expected: self,
        };
        match (self, value, doc) {
            (Self::Bytes, Some(value), _) => Ok(value),
            (Self::Jsonb, _, Some(doc)) => Ok(doc.into_bytes()),
            (Self::Bytes, None, _) => Err(wrong(Self::Jsonb)),
            (Self::Jsonb, _, None) => Err(wrong(Self::Bytes)),
        }
    }
}

/// Whether serialised JSON escapes the NUL character (`\u0000` after an even run of
/// backslashes: an escaped backslash followed by `u0000` is text, not NUL).
fn escapes_nul(json: &[u8]) -> bool {
    const ESCAPE: &[u8] = b"\\u0000";
    json.windows(ESCAPE.len()).enumerate().any(|(at, window)| {
        window == ESCAPE
            && json[..at].iter().rev().take_while(|byte| **byte == b'\\').count() % 2 == 0
    })
}

/// The projections, collections and tables of versions this process has registered: once
/// there, their rows stay as long as the version may write (only a newer version's takeover
/// drops them, and the older version writes nothing after it).
#[derive(Debug, Default)]
struct Registered {
    projections: HashSet<&'static str>,
    collections: HashSet<(String, u32)>,
    tables: HashSet<(String, u32)>,
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
    /// A read model's table name must be 1 to 48 characters of `a-z`, `0-9` and `_`, starting
    /// with a letter or `_` (its versions add `_v{N}`).
    #[error(
        "`{0}` is not a read model table name: use 1 to 48 characters of a-z, 0-9 and `_`, \
         starting with a letter or `_`"
    )]
    InvalidTable(String),
    /// A projection's version does not fit the tables' integer.
    #[error("projection `{projection}`: version {version} does not fit an integer column")]
    VersionTooLarge {
        /// The projection.
        projection: String,
        /// Its version.
        version: u32,
    },
    /// A document is stored in another form than the store reads ([`DocumentForm`]).
    #[error(
        "document `{collection}/{key}` is stored as {stored:?}, and this store reads {expected:?}: \
         give the projection a new VERSION to rebuild its documents in the new form"
    )]
    DocumentForm {
        /// Its collection.
        collection: String,
        /// Its key.
        key: String,
        /// The form it is stored in.
        stored: DocumentForm,
        /// The form the store reads.
        expected: DocumentForm,
    },
    /// A stored dead letter cannot be read back as an event.
    #[error("a dead letter of projection `{projection}` is corrupt: {reason}")]
    CorruptDeadLetter {
        /// The projection.
        projection: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A stream's applied version, kept for a projection that follows the bus, is not one.
    #[error(
        "checkpoint `{checkpoint}`: the version {version} kept for stream `{stream}` is not a \
         stream version; rebuild the projection (ProjectionRunner::rebuild)"
    )]
    CorruptStreamVersion {
        /// The projection's version, by checkpoint name.
        checkpoint: String,
        /// The stream.
        stream: String,
        /// What is stored.
        version: i64,
    },
}

/// A query of the documents queries read — those of collection `$1` in the active version of
/// its projection, `d` being the document — with `$select` and the rest of the query around it.
macro_rules! serving {
    ($select:literal, $rest:literal) => {
        concat!(
            $select,
            // The version first, so the document is one lookup of the primary key.
            " FROM read_documents d WHERE d.collection = $1 AND d.version = (\
                 SELECT c.version FROM projection_collections c \
                 JOIN projection_versions v ON v.projection = c.projection AND v.active = c.version \
                 WHERE c.collection = $1) ",
            $rest
        )
    };
}

fn database(operation: &'static str) -> impl FnOnce(sqlx::Error) -> ReadModelError {
    move |source| ReadModelError::Database { operation, transient: is_transient(&source), source }
}

impl PostgresReadStore {
    /// A store on `pool`'s database; run [`migrate`](Self::migrate) before first use.
    pub fn new(pool: PgPool) -> Self {
        Self { pool, form: DocumentForm::default(), registered: Arc::default() }
    }

    /// Keeps typed documents in `form` ([`DocumentForm::Bytes`] by default).
    #[must_use]
    pub fn with_documents(mut self, form: DocumentForm) -> Self {
        self.form = form;
        self
    }

    /// How it keeps typed documents.
    pub fn document_form(&self) -> DocumentForm {
        self.form
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

    fn registered(&self) -> std::sync::MutexGuard<'_, Registered> {
        self.registered.lock().unwrap_or_else(PoisonError::into_inner)
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
        let bytes = self.load(collection, key).await?;
        Ok(bytes.map(|bytes| self.form.decode(collection, key, &bytes)).transpose()?)
    }

    /// Whether `collection` has a document `key`.
    ///
    /// # Errors
    /// A bad collection name, or the database.
    pub async fn exists(&self, collection: &str, key: &str) -> Result<bool, ReadModelError> {
        collection_name(collection)?;
        let found: Option<(i32,)> = sqlx::query_as(serving!("SELECT 1", "AND d.key = $2"))
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
        let rows: Vec<(String, Option<Vec<u8>>, Option<String>)> = sqlx::query_as(serving!(
            "SELECT d.key, d.value, d.doc::text",
            "AND starts_with(d.key, $2) ORDER BY d.key"
        ))
        .bind(collection)
        .bind(prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(database("list"))?;
        rows.into_iter()
            .map(|(key, value, doc)| {
                let bytes = self.form.of_row(collection, &key, value, doc)?;
                let value = self.form.decode(collection, &key, &bytes)?;
                Ok((key, value))
            })
            .collect()
    }
}

/// Checks a read model table name: 1 to 48 characters of `a-z`, `0-9` and `_`, not starting
/// with a digit, so that it and its versions' names (`{name}_v{N}`) are plain identifiers.
fn table_name(name: &str) -> Result<(), ReadModelError> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let starts = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if starts && name.len() <= 48 && name.chars().all(allowed) {
        Ok(())
    } else {
        Err(ReadModelError::InvalidTable(name.to_owned()))
    }
}

/// The table of version `version` of read model table `name` (already checked).
fn versioned(name: &str, version: u32) -> String {
    format!("{name}_v{version}")
}

/// Points the view `name` at version `version`'s table, in `connection`'s transaction.
async fn publish(
    connection: &mut PgConnection,
    name: &str,
    version: u32,
) -> Result<(), ReadModelError> {
    let table = versioned(name, version);
    // Names were checked: plain identifiers, quoted all the same.
    sqlx::query(AssertSqlSafe(format!("DROP VIEW IF EXISTS \"{name}\"")))
        .execute(&mut *connection)
        .await
        .map_err(database("replace a read model's view"))?;
    sqlx::query(AssertSqlSafe(format!("CREATE VIEW \"{name}\" AS SELECT * FROM \"{table}\"")))
        .execute(&mut *connection)
        .await
        .map_err(database("create a read model's view"))?;
    Ok(())
}

/// Empties (`drop` false) or drops (`drop` true) version `version` of `projection` in
/// `connection`'s transaction: its tables, documents, checkpoint, claim and dead letters.
async fn remove(
    connection: &mut PgConnection,
    projection: &str,
    version: u32,
    drop: bool,
) -> Result<(), ReadModelError> {
    let stored = i32::try_from(version).map_err(|_| version_too_large(projection, version))?;
    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM projection_tables WHERE projection = $1 AND version = $2")
            .bind(projection)
            .bind(stored)
            .fetch_all(&mut *connection)
            .await
            .map_err(database("read a version's tables"))?;
    for (name,) in tables {
        table_name(&name)?;
        let table = versioned(&name, version);
        let statement = if drop {
            format!("DROP TABLE IF EXISTS \"{table}\"")
        } else {
            format!("TRUNCATE \"{table}\"")
        };
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut *connection)
            .await
            .map_err(database("empty or drop a version's table"))?;
    }
    sqlx::query(
        "DELETE FROM read_documents d USING projection_collections c \
         WHERE c.projection = $1 AND c.version = $2 \
           AND d.collection = c.collection AND d.version = c.version",
    )
    .bind(projection)
    .bind(stored)
    .execute(&mut *connection)
    .await
    .map_err(database("delete a version's documents"))?;
    if drop {
        for statement in [
            "DELETE FROM projection_tables WHERE projection = $1 AND version = $2",
            "DELETE FROM projection_collections WHERE projection = $1 AND version = $2",
        ] {
            sqlx::query(statement)
                .bind(projection)
                .bind(stored)
                .execute(&mut *connection)
                .await
                .map_err(database("forget a version"))?;
        }
    }
    let name = Scope::checkpoint_of(projection, version);
    let mut statements = vec![
        "DELETE FROM projection_checkpoints WHERE name = $1",
        "DELETE FROM projection_dead_letters WHERE projection = $1",
        "DELETE FROM projection_streams WHERE checkpoint = $1",
    ];
    if drop {
        statements.push("DELETE FROM projection_claims WHERE name = $1");
    }
    for statement in statements {
        sqlx::query(statement)
            .bind(&name)
            .execute(&mut *connection)
            .await
            .map_err(database("drop a version's checkpoint and dead letters"))?;
    }
    Ok(())
}

fn version_too_large(projection: &str, version: u32) -> ReadModelError {
    ReadModelError::VersionTooLarge { projection: projection.to_owned(), version }
}

/// One batch of a projection on PostgreSQL: a transaction. Everything written through it —
/// the user's SQL on [`connection`](Self::connection), documents — commits together with the
/// projection's checkpoint, or not at all.
///
/// It writes one version of its projection ([`Scope`]): documents of that version, and the
/// version's own tables, named by [`table`](Self::table).
#[derive(Debug)]
pub struct PostgresBatch {
    transaction: Transaction<'static, Postgres>,
    store: PostgresReadStore,
    scope: Scope,
    /// The version that serves queries as the batch began (it holds that row shared, so the
    /// version cannot switch under it).
    active: u32,
    /// The streams with dead letters as the batch began.
    parked: BTreeSet<String>,
    /// Documents written (`None`: deleted), sent in two statements when the batch commits.
    staged: BTreeMap<(String, String), Option<Vec<u8>>>,
    /// Streams it moves: from the version read, to the one applied ([`StreamGuards`]).
    guards: Vec<(String, Option<Version>, Version)>,
}

impl PostgresBatch {
    /// The transaction's connection, for the handler's own SQL:
    /// `sqlx::query("...").bind(..).execute(batch.connection()).await`. (Documents written
    /// through the batch reach `read_documents` when it commits, in one statement: the batch's
    /// own reads see them before.)
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.transaction
    }

    /// The version of its projection the batch writes.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The table this batch's version keeps read model table `name` in: `{name}_v{VERSION}`,
    /// created by the application's migrations. Queries read the view `{name}`, which the
    /// store points at the active version's table — so a new version of the projection fills
    /// its own table while queries read the old one, and they switch when it takes over; the
    /// older version's table is then dropped.
    ///
    /// ```no_run
    /// # async fn apply(batch: &mut composable_postgres::PostgresBatch) -> Result<(), Box<dyn std::error::Error>> {
    /// let table = batch.table("order_history").await?; // "order_history_v1" in version 1
    /// // `table` is a checked identifier.
    /// let insert = format!("INSERT INTO {table} (order_id, customer) VALUES ($1, $2)");
    /// sqlx::query(sqlx::AssertSqlSafe(insert))
    ///     .bind("o-1")
    ///     .bind("ada")
    ///     .execute(batch.connection())
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ReadModelError::InvalidTable`], or the database (registering the table, or creating
    /// its view: the first use of `{name}` by the active version makes `{name}` a view, and
    /// fails when a table of that name is in the way).
    pub async fn table(&mut self, name: &str) -> Result<String, ReadModelError> {
        table_name(name)?;
        let entry = (name.to_owned(), self.scope.version);
        if !self.store.registered().tables.contains(&entry) {
            // In a transaction of its own, committed at once: an open batch must not hold
            // another one registering the same table back.
            let mut own = self.store.pool.begin().await.map_err(database("begin"))?;
            let registered = sqlx::query(
                "INSERT INTO projection_tables (projection, version, name) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(self.scope.projection)
            .bind(self.version()?)
            .bind(name)
            .execute(&mut *own)
            .await
            .map_err(database("register a read model table"))?
            .rows_affected()
                == 1;
            // The batch holds the active version shared: no switch can come in between.
            if registered && self.active == self.scope.version {
                publish(&mut own, name, self.scope.version).await?;
            }
            own.commit().await.map_err(database("commit a table's registration"))?;
            self.store.registered().tables.insert(entry);
        }
        Ok(versioned(name, self.scope.version))
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
        let bytes = PostgresReadStore::read(self, collection, key).await?;
        Ok(bytes.map(|bytes| self.store.form.decode(collection, key, &bytes)).transpose()?)
    }

    /// Moves the streams it guards, in the batch's transaction: `false` when one of them is no
    /// longer at the version the batch read (another consumer applied it), and the batch must
    /// be rolled back.
    async fn move_streams(&mut self) -> Result<bool, ReadModelError> {
        if self.guards.is_empty() {
            return Ok(true);
        }
        let name = self.scope.checkpoint();
        let stored = |version: Version| {
            i64::try_from(version.0).map_err(|_| ReadModelError::PositionTooLarge(name.clone()))
        };
        let (mut updated, mut from, mut to) = (Vec::new(), Vec::new(), Vec::new());
        let (mut inserted, mut first) = (Vec::new(), Vec::new());
        for (stream, was, now) in &self.guards {
            match was {
                Some(was) => {
                    updated.push(stream.as_str());
                    from.push(stored(*was)?);
                    to.push(stored(*now)?);
                }
                None => {
                    inserted.push(stream.as_str());
                    first.push(stored(*now)?);
                }
            }
        }
        // Row locks make a concurrent batch of the same stream wait for this one, then find the
        // version changed (or the row there) and move nothing.
        if !updated.is_empty() {
            let moved = sqlx::query(
                "UPDATE projection_streams s SET version = g.to_version \
                 FROM UNNEST($2::text[], $3::bigint[], $4::bigint[]) AS g (stream_id, from_version, to_version) \
                 WHERE s.checkpoint = $1 AND s.stream_id = g.stream_id AND s.version = g.from_version",
            )
            .bind(&name)
            .bind(&updated)
            .bind(&from)
            .bind(&to)
            .execute(&mut *self.transaction)
            .await
            .map_err(database("move the streams' versions"))?
            .rows_affected();
            if moved != updated.len() as u64 {
                return Ok(false);
            }
        }
        if !inserted.is_empty() {
            let added = sqlx::query(
                "INSERT INTO projection_streams (checkpoint, stream_id, version) \
                 SELECT $1, g.stream_id, g.version FROM UNNEST($2::text[], $3::bigint[]) AS g (stream_id, version) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&name)
            .bind(&inserted)
            .bind(&first)
            .execute(&mut *self.transaction)
            .await
            .map_err(database("save the streams' first versions"))?
            .rows_affected();
            if added != inserted.len() as u64 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sends the staged documents, in the batch's transaction.
    async fn flush(&mut self) -> Result<(), ReadModelError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let version = self.version()?;
        let (mut put_collections, mut put_keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
        let (mut deleted_collections, mut deleted_keys) = (Vec::new(), Vec::new());
        for ((collection, key), value) in std::mem::take(&mut self.staged) {
            match value {
                Some(value) => {
                    put_collections.push(collection);
                    put_keys.push(key);
                    values.push(value);
                }
                None => {
                    deleted_collections.push(collection);
                    deleted_keys.push(key);
                }
            }
        }
        if !deleted_keys.is_empty() {
            sqlx::query(
                "DELETE FROM read_documents d USING UNNEST($1::text[], $2::text[]) AS gone (c, k) \
                 WHERE d.collection = gone.c AND d.version = $3 AND d.key = gone.k",
            )
            .bind(&deleted_collections)
            .bind(&deleted_keys)
            .bind(version)
            .execute(&mut *self.transaction)
            .await
            .map_err(database("delete documents"))?;
        }
        if put_keys.is_empty() {
            return Ok(());
        }
        let put = match self.store.form {
            DocumentForm::Bytes => sqlx::query(
                "INSERT INTO read_documents (collection, version, key, value) \
                 SELECT c, $3, k, v FROM UNNEST($1::text[], $2::text[], $4::bytea[]) AS put (c, k, v) \
                 ON CONFLICT (collection, version, key) \
                 DO UPDATE SET value = EXCLUDED.value, doc = NULL",
            )
            .bind(&put_collections)
            .bind(&put_keys)
            .bind(version)
            .bind(&values),
            DocumentForm::Jsonb => {
                let texts = values
                    .into_iter()
                    .zip(&put_collections)
                    .zip(&put_keys)
                    .map(|((json, collection), key)| {
                        String::from_utf8(json).map_err(|error| {
                            ReadModelError::Document(DocumentError::Codec {
                                collection: collection.clone(),
                                key: key.clone(),
                                source: CodecError::encode(DocumentForm::Jsonb.format(), error),
                            })
                        })
                    })
                    .collect::<Result<Vec<String>, _>>()?;
                sqlx::query(
                    "INSERT INTO read_documents (collection, version, key, doc) \
                     SELECT c, $3, k, v::jsonb \
                     FROM UNNEST($1::text[], $2::text[], $4::text[]) AS put (c, k, v) \
                     ON CONFLICT (collection, version, key) \
                     DO UPDATE SET value = NULL, doc = EXCLUDED.doc",
                )
                .bind(&put_collections)
                .bind(&put_keys)
                .bind(version)
                .bind(texts)
            }
        };
        put.execute(&mut *self.transaction).await.map_err(database("write documents"))?;
        Ok(())
    }

    fn version(&self) -> Result<i32, ReadModelError> {
        i32::try_from(self.scope.version)
            .map_err(|_| version_too_large(self.scope.projection, self.scope.version))
    }

    /// Registers `collection` as one of this version's, once per process, committed at once
    /// (an open batch must not hold another one registering it back).
    async fn own(&mut self, collection: &str) -> Result<(), ReadModelError> {
        let entry = (collection.to_owned(), self.scope.version);
        if self.store.registered().collections.contains(&entry) {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO projection_collections (collection, version, projection) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(collection)
        .bind(self.version()?)
        .bind(self.scope.projection)
        .execute(&self.store.pool)
        .await
        .map_err(database("register a collection"))?;
        self.store.registered().collections.insert(entry);
        Ok(())
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
        let bytes = self.store.form.encode(collection, key, value)?;
        PostgresReadStore::write(self, collection, key, Some(bytes)).await
    }

    /// Deletes document `key` of `collection` (nothing when there is none).
    ///
    /// # Errors
    /// A bad collection name, or the database.
    pub async fn delete(&mut self, collection: &str, key: &str) -> Result<(), ReadModelError> {
        PostgresReadStore::write(self, collection, key, None).await
    }
}

/// Documents as bytes in the store's [`DocumentForm`] (bincode, or JSON text): what
/// [`PostgresBatch::get`] and the typed reads decode, and what a
/// [`Cached`](composable::projection::Cached) store copies into its cache.
impl StreamGuards for PostgresReadStore {
    /// Read in the batch's transaction.
    async fn applied(
        batch: &mut PostgresBatch,
        streams: &[&str],
    ) -> Result<BTreeMap<String, Version>, ReadModelError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT stream_id, version FROM projection_streams \
             WHERE checkpoint = $1 AND stream_id = ANY($2)",
        )
        .bind(batch.scope.checkpoint())
        .bind(streams)
        .fetch_all(&mut *batch.transaction)
        .await
        .map_err(database("read the streams' versions"))?;
        rows.into_iter()
            .map(|(stream, version)| match u64::try_from(version) {
                Ok(applied) if applied > 0 => Ok((stream, Version(applied))),
                _ => Err(ReadModelError::CorruptStreamVersion {
                    checkpoint: batch.scope.checkpoint(),
                    stream,
                    version,
                }),
            })
            .collect()
    }

    /// Moved when the batch commits: an update from the version read, or an insert for a
    /// stream seen first.
    fn guard(batch: &mut PostgresBatch, stream: &str, from: Option<Version>, to: Version) {
        batch.guards.push((stream.to_owned(), from, to));
    }
}

impl DocumentStore for PostgresReadStore {
    fn encode<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<Vec<u8>, DocumentError> {
        self.form.encode(collection, key, value)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, DocumentError> {
        self.form.decode(collection, key, bytes)
    }

    async fn load(&self, collection: &str, key: &str) -> Result<Option<Vec<u8>>, ReadModelError> {
        collection_name(collection)?;
        let row: Option<(Option<Vec<u8>>, Option<String>)> =
            sqlx::query_as(serving!("SELECT d.value, d.doc::text", "AND d.key = $2"))
                .bind(collection)
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(database("get"))?;
        row.map(|(value, doc)| self.form.of_row(collection, key, value, doc)).transpose()
    }

    async fn read(
        batch: &mut PostgresBatch,
        collection: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, ReadModelError> {
        collection_name(collection)?;
        if let Some(staged) = batch.staged.get(&(collection.to_owned(), key.to_owned())) {
            return Ok(staged.clone());
        }
        let row: Option<(Option<Vec<u8>>, Option<String>)> = sqlx::query_as(
            "SELECT value, doc::text FROM read_documents \
             WHERE collection = $1 AND version = $2 AND key = $3",
        )
        .bind(collection)
        .bind(batch.version()?)
        .bind(key)
        .fetch_optional(&mut *batch.transaction)
        .await
        .map_err(database("get"))?;
        row.map(|(value, doc)| batch.store.form.of_row(collection, key, value, doc)).transpose()
    }

    /// Stages the change: the batch's documents go to the database in two statements when it
    /// commits (one upsert of every document written, one delete of every document deleted).
    async fn write(
        batch: &mut PostgresBatch,
        collection: &str,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), ReadModelError> {
        collection_name(collection)?;
        if value.is_some() {
            batch.own(collection).await?;
        }
        batch.staged.insert((collection.to_owned(), key.to_owned()), value);
        Ok(())
    }
}

impl ReadStore for PostgresReadStore {
    type Batch = PostgresBatch;
    type Error = ReadModelError;
    type Checkpoints = PostgresCheckpointStore;

    /// The database unreachable, or a transaction that lost a race (a serialization failure,
    /// a deadlock): the batch is built again.
    fn is_transient(error: &ReadModelError) -> bool {
        matches!(error, ReadModelError::Database { transient: true, .. })
    }

    /// Begins a transaction, making `scope`'s version the active one if none is, and holding
    /// the row of the active version shared until it ends: a switch waits for the batches of
    /// the old version in flight, and those begun after it see it. The parked streams are read
    /// in the same statement.
    async fn begin(&self, scope: Scope) -> Result<PostgresBatch, ReadModelError> {
        let version = i32::try_from(scope.version)
            .map_err(|_| version_too_large(scope.projection, scope.version))?;
        if !self.registered().projections.contains(scope.projection) {
            // On its own, committed at once: an open batch must not hold others back.
            sqlx::query(
                "INSERT INTO projection_versions (projection, active) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(scope.projection)
            .bind(version)
            .execute(&self.pool)
            .await
            .map_err(database("register the first version"))?;
            self.registered().projections.insert(scope.projection);
        }
        let mut transaction = self.pool.begin().await.map_err(database("begin"))?;
        // The parked streams in the same round trip: every batch needs them.
        let (active, parked): (i32, Vec<String>) = sqlx::query_as(
            "SELECT v.active, ARRAY(SELECT DISTINCT stream_id FROM projection_dead_letters \
                                    WHERE projection = $2) \
             FROM projection_versions v WHERE v.projection = $1 FOR SHARE OF v",
        )
        .bind(scope.projection)
        .bind(scope.checkpoint())
        .fetch_one(&mut *transaction)
        .await
        .map_err(database("read the active version and the parked streams"))?;
        Ok(PostgresBatch {
            transaction,
            store: self.clone(),
            scope,
            active: u32::try_from(active).unwrap_or(0),
            parked: parked.into_iter().collect(),
            staged: BTreeMap::new(),
            guards: Vec::new(),
        })
    }

    fn serving(batch: &PostgresBatch) -> u32 {
        batch.active
    }

    fn parked(batch: &PostgresBatch) -> &BTreeSet<String> {
        &batch.parked
    }

    async fn active_version(
        &self,
        projection: &'static str,
    ) -> Result<Option<u32>, ReadModelError> {
        let active: Option<(i32,)> =
            sqlx::query_as("SELECT active FROM projection_versions WHERE projection = $1")
                .bind(projection)
                .fetch_optional(&self.pool)
                .await
                .map_err(database("read the active version"))?;
        Ok(active.and_then(|(active,)| u32::try_from(active).ok()))
    }

    /// In one transaction: the switch (waiting for the batches of the old version in flight),
    /// each of the version's tables' views pointed at its table, and every older version
    /// dropped — its tables, documents, checkpoint, claim and dead letters.
    async fn activate(&self, scope: Scope) -> Result<Option<u32>, ReadModelError> {
        let version = i32::try_from(scope.version)
            .map_err(|_| version_too_large(scope.projection, scope.version))?;
        let mut transaction = self.pool.begin().await.map_err(database("begin"))?;
        let replaced: Option<(i32,)> = sqlx::query_as(
            "SELECT active FROM projection_versions WHERE projection = $1 FOR UPDATE",
        )
        .bind(scope.projection)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(database("lock the active version"))?;
        let replaced = replaced.and_then(|(active,)| u32::try_from(active).ok());
        if replaced.is_some_and(|active| active > scope.version) {
            transaction.rollback().await.map_err(database("roll back"))?;
            return Ok(replaced);
        }
        sqlx::query(
            "INSERT INTO projection_versions (projection, active) VALUES ($1, $2) \
             ON CONFLICT (projection) DO UPDATE SET active = EXCLUDED.active, switched_at = now()",
        )
        .bind(scope.projection)
        .bind(version)
        .execute(&mut *transaction)
        .await
        .map_err(database("switch the active version"))?;
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM projection_tables WHERE projection = $1 AND version = $2",
        )
        .bind(scope.projection)
        .bind(version)
        .fetch_all(&mut *transaction)
        .await
        .map_err(database("read the version's tables"))?;
        for (name,) in tables {
            table_name(&name)?;
            publish(&mut transaction, &name, scope.version).await?;
        }
        let mut older: BTreeSet<u32> = BTreeSet::new();
        let versions: Vec<(i32,)> = sqlx::query_as(
            "SELECT version FROM projection_collections WHERE projection = $1 AND version < $2 \
             UNION SELECT version FROM projection_tables WHERE projection = $1 AND version < $2",
        )
        .bind(scope.projection)
        .bind(version)
        .fetch_all(&mut *transaction)
        .await
        .map_err(database("read the older versions"))?;
        older.extend(versions.into_iter().filter_map(|(version,)| u32::try_from(version).ok()));
        let names: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM projection_checkpoints WHERE starts_with(name, $1) \
             UNION SELECT projection FROM projection_dead_letters WHERE starts_with(projection, $1) \
             UNION SELECT DISTINCT checkpoint FROM projection_streams WHERE starts_with(checkpoint, $1)",
        )
        .bind(Scope::checkpoint_of(scope.projection, 1))
        .fetch_all(&mut *transaction)
        .await
        .map_err(database("read the older checkpoints"))?;
        older.extend(names.iter().filter_map(|(name,)| {
            Scope::version_in(scope.projection, name).filter(|found| *found < scope.version)
        }));
        for old in older {
            remove(&mut transaction, scope.projection, old, true).await?;
        }
        transaction.commit().await.map_err(database("commit the switch"))?;
        Ok(replaced.filter(|active| *active != scope.version))
    }

    async fn clear(&self, scope: Scope) -> Result<(), ReadModelError> {
        let mut transaction = self.pool.begin().await.map_err(database("begin"))?;
        remove(&mut transaction, scope.projection, scope.version, false).await?;
        transaction.commit().await.map_err(database("commit the clearing"))
    }

    async fn commit(
        &self,
        batch: PostgresBatch,
        at: Checkpoint<'_>,
    ) -> Result<Saved, ReadModelError> {
        if batch.active > batch.scope.version {
            batch.transaction.rollback().await.map_err(database("roll back"))?;
            return Ok(Saved::Retired);
        }
        let mut batch = batch;
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
            .execute(&mut *batch.transaction)
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
                .execute(&mut *batch.transaction)
                .await
                .map_err(database("save the first checkpoint"))?
                .rows_affected()
                == 1
        } else {
            false
        };
        if !saved || !batch.move_streams().await? {
            batch.transaction.rollback().await.map_err(database("roll back"))?;
            return Ok(Saved::Moved);
        }
        batch.flush().await?;
        batch.transaction.commit().await.map_err(database("commit"))?;
        Ok(Saved::ByHandler)
    }

    async fn commit_batch(&self, batch: PostgresBatch) -> Result<Saved, ReadModelError> {
        if batch.active > batch.scope.version {
            batch.transaction.rollback().await.map_err(database("roll back"))?;
            return Ok(Saved::Retired);
        }
        let mut batch = batch;
        if !batch.move_streams().await? {
            batch.transaction.rollback().await.map_err(database("roll back"))?;
            return Ok(Saved::Moved);
        }
        batch.flush().await?;
        batch.transaction.commit().await.map_err(database("commit"))?;
        Ok(Saved::ByConsumer)
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
            // A parked event keeps its flow, not the span that appended it.
            trace: None,
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
