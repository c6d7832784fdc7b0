//! The event store on PostgreSQL: appends in one statement (one round trip), gap-safe global
//! reads, streamed stream reads and snapshots.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use composable::backend::{repeated_event_id, retried_append};
use composable::backoff::Backoff;
use composable::envelope::Snapshot;
use composable::envelope::StoredEvent;
use composable::event_store::Appends;
use composable::event_store::{AppendResult, EventStoreError, StreamPart};
use composable::{
    Clock, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId, SystemClock,
    Version,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{AssertSqlSafe, PgExecutor, Row};
use uuid::Uuid;

use crate::MIGRATOR;
use crate::config::PostgresEventStoreBuilder;
use crate::error::{PostgresError, is_serialization_failure, store_error, unique_violation};
use crate::group::{GroupCommit, Outcome};
use crate::notify::Notifications;
use crate::rows::{
    EVENT_COLUMNS, EventColumns, SNAPSHOT_COLUMNS, STORED_EVENT_COLUMNS, Xid8, event_position,
    recorded_event, snapshot, snapshot_after_events, stored_event,
};

static READ_STREAM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version"
    )
});

/// What folding a stream reads: six columns of its events, through its index in order.
static READ_STREAM_STORED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {STORED_EVENT_COLUMNS} FROM events \
         WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version"
    )
});

/// A stream's snapshot of one schema and format and its events after it, in one query: the
/// snapshot (zero or one row, by its key) joined to the events after its version, read through
/// the stream's index in order. The snapshot's columns follow the event's; its state comes only
/// with the first row (the event right after it, or no event when none follows), so a large
/// state travels once. There is always at least one row: all NULL for a stream with neither.
///
/// The rows come in version order because the join is a nested loop over one outer row, whose
/// inner side is ordered: a top-level `ORDER BY` would add a sort of the whole tail (or of the
/// whole stream without a snapshot), and measured slower than two queries. The reader checks
/// the order anyway.
static READ_FROM_SNAPSHOT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT e.*, s.version, s.payload_format, \
                CASE WHEN e.stream_version IS NULL OR e.stream_version = s.version + 1 \
                     THEN s.state END, \
                s.schema_version, s.taken_at \
           FROM (SELECT) one \
           LEFT JOIN snapshots s \
                  ON s.stream_id = $1 AND s.schema_version = $2 AND s.payload_format = $3 \
           LEFT JOIN LATERAL ( \
                SELECT {STORED_EVENT_COLUMNS} FROM events \
                 WHERE stream_id = $1 AND stream_version > coalesce(s.version, 0) \
                 ORDER BY stream_version) e ON true"
    )
});

static READ_ALL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2) \
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY transaction_id, position LIMIT $3"
    )
});

/// An append: one statement, always sent on its own, so it is its own transaction. Its events go
/// after the stream's version `base`, taking positions `(this transaction, 1..=n)`, and each
/// row written is returned with its transaction id and version.
///
/// `base` is `$2`, the expected version, or for any version (`$2` NULL) the stream's version,
/// read once. The one-time filter writes nothing when the expected version cannot hold: for
/// `$2 = k > 0` event `k` must exist, and a later one makes `events_stream_version_key` refuse
/// the insert; for `$2 = 0` that key alone refuses a stream that exists. For any version, a
/// writer that got there first makes the same key refuse the append, which
/// [`PostgresEventStore::append`] sends again.
///
/// Whatever succeeds saw every earlier event of its stream committed, so its transaction id,
/// taken at its first row, is higher than theirs: a stream's events are in version order in the
/// global log too. That needs the append to be its transaction's first write, so this statement
/// never runs inside a caller's transaction. See docs/adr/0001-postgres-event-store.md.
const APPEND: &str = "INSERT INTO events (position, stream_id, stream_version, event_id, \
                         event_name, event_version, payload_format, payload, correlation_id, \
                         causation_id, occurred_at_ns, traceparent) \
     SELECT e.ord, $1, \
            coalesce($2, (SELECT coalesce(max(stream_version), 0) FROM events \
                          WHERE stream_id = $1)) + e.ord, \
            e.event_id, e.event_name, e.event_version, e.payload_format, e.payload, \
            e.correlation_id, e.causation_id, e.occurred_at_ns, e.traceparent \
       FROM unnest($3::uuid[], $4::text[], $5::int4[], $6::text[], $7::bytea[], $8::uuid[], \
                   $9::uuid[], $10::int8[], $11::text[]) \
            WITH ORDINALITY AS e(event_id, event_name, event_version, payload_format, payload, \
                                 correlation_id, causation_id, occurred_at_ns, traceparent, ord) \
      WHERE $2 IS NULL OR $2 = 0 \
         OR EXISTS (SELECT FROM events WHERE stream_id = $1 AND stream_version = $2) \
     RETURNING transaction_id, stream_version";

/// [`APPEND`] of one event, without arrays: the parameters are the row's values (`$3` onwards),
/// and the same checks hold. Most commands append one event; binding and unnesting eleven
/// one-element arrays cost more than the insert.
const APPEND_ONE: &str = "INSERT INTO events (position, stream_id, stream_version, event_id, \
                             event_name, event_version, payload_format, payload, \
                             correlation_id, causation_id, occurred_at_ns, traceparent) \
     SELECT 1, $1, \
            coalesce($2, (SELECT coalesce(max(stream_version), 0) FROM events \
                          WHERE stream_id = $1)) + 1, \
            $3, $4, $5, $6, $7, $8, $9, $10, $11 \
      WHERE $2 IS NULL OR $2 = 0 \
         OR EXISTS (SELECT FROM events WHERE stream_id = $1 AND stream_version = $2) \
     RETURNING transaction_id, stream_version";

/// How an append is sent again while it loses races it can retry — an append at any version
/// whose versions another writer took first, an append refused for a version the stream has
/// reached since, or any append refused by a serialization failure — at most 100 times. Only a
/// serialization failure waits (the other transaction may still be running): 1 ms doubling up
/// to 10 ms, with jitter. After the last attempt it is reported like any other refusal.
const APPEND_RETRY: Backoff = Backoff::exponential(Duration::from_millis(1))
    .max_delay(Duration::from_millis(10))
    .attempts(100);

/// What one append statement wrote, from the rows it returned.
#[derive(Debug)]
struct Written {
    writer: u64,
    count: u64,
    first_version: i64,
    last_version: i64,
}

/// Why an append statement has no outcome.
enum WriteError {
    /// The statement failed: nothing was written.
    Statement(sqlx::Error),
    /// It succeeded, but a returned row could not be read.
    Outcome(sqlx::Error),
}

impl Written {
    /// Reads every row the statement returns, since a failure can still come after rows (at
    /// commit, under a serializable default); `None` when it wrote nothing. A failure of the
    /// statement wins over a row that could not be read.
    async fn read(
        mut rows: BoxStream<'_, Result<PgRow, sqlx::Error>>,
    ) -> Result<Option<Self>, WriteError> {
        let mut written: Option<Self> = None;
        let mut unreadable = None;
        while let Some(row) = rows.next().await {
            let row = row.map_err(WriteError::Statement)?;
            let read = row
                .try_get::<Xid8, _>(0)
                .and_then(|Xid8(writer)| Ok((writer, row.try_get::<i64, _>(1)?)));
            match (read, written.as_mut()) {
                (Ok((writer, version)), None) => {
                    written = Some(Self {
                        writer,
                        count: 1,
                        first_version: version,
                        last_version: version,
                    });
                }
                (Ok((_, version)), Some(so_far)) => {
                    so_far.count += 1;
                    so_far.first_version = so_far.first_version.min(version);
                    so_far.last_version = so_far.last_version.max(version);
                }
                (Err(error), _) => unreadable = unreadable.or(Some(error)),
            }
        }
        match unreadable {
            Some(error) => Err(WriteError::Outcome(error)),
            None => Ok(written),
        }
    }

    /// The append's result, when the rows are the `expected` events at consecutive versions.
    fn into_result(
        self,
        stream: &StreamId,
        expected: usize,
    ) -> Result<AppendResult, EventStoreError> {
        let Self { writer, count, first_version, last_version } = self;
        let what = || format!("the append to `{stream}`");
        let consecutive =
            last_version.checked_sub(first_version).and_then(|span| u64::try_from(span).ok())
                == Some(count - 1);
        match (u64::try_from(first_version), u64::try_from(last_version)) {
            (Ok(first), Ok(last)) if first > 0 && consecutive && count == expected as u64 => {
                Ok(AppendResult {
                    first_version: Version(first),
                    last_version: Version(last),
                    last_position: event_position(writer.into(), to_i64(count), what)?,
                })
            }
            _ => Err(EventStoreError::Corrupt {
                position: Position::START,
                reason: format!(
                    "{} wrote {count} of {expected} events, versions {first_version} to \
                     {last_version}",
                    what()
                ),
            }),
        }
    }
}

/// An [`EventStore`] on PostgreSQL. Cheap to clone: clones share one connection pool.
///
/// Build one with [`PostgresEventStore::builder`], or wrap an existing pool with
/// [`PostgresEventStore::from_pool`]; run [`PostgresEventStore::migrate`] before first use.
#[derive(Debug, Clone)]
pub struct PostgresEventStore {
    pool: PgPool,
    schema: Option<String>,
    notifications: Arc<Notifications>,
    clock: Arc<dyn Clock>,
    /// Group commit of one-event appends (the `group` module), started by the first append
    /// that finds another one running.
    group: Arc<OnceLock<GroupCommit>>,
    /// Appends of this store (and its clones) running now.
    appending: Arc<AtomicUsize>,
}

impl PostgresEventStore {
    /// A builder for the connection, pool and schema settings.
    pub fn builder() -> PostgresEventStoreBuilder {
        PostgresEventStoreBuilder::default()
    }

    /// Connects to `url` with the default pool settings.
    ///
    /// # Errors
    /// When the URL is invalid or the database cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, PostgresError> {
        Self::builder().url(url)?.connect().await
    }

    /// A store on an existing pool, whose `search_path` names the schema of the tables.
    ///
    /// The pool's own settings apply (the builder's pools check only connections idle for a
    /// while: [`PostgresEventStoreBuilder::check_idle_after`]); keep sqlx's default
    /// `test_before_acquire(true)`, or a check of your own, so that
    /// connections that died with a server restart are replaced rather than handed out.
    pub fn from_pool(pool: PgPool) -> Self {
        Self::with_settings(pool, None)
    }

    pub(crate) fn with_settings(pool: PgPool, schema: Option<String>) -> Self {
        let notifications = Arc::new(Notifications::new(pool.clone(), schema.as_deref()));
        Self {
            pool,
            schema,
            notifications,
            clock: Arc::new(SystemClock),
            group: Arc::new(OnceLock::new()),
            appending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Waits between retried appends on `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The connection pool, for running other queries in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the schema (when one was configured) and applies the embedded migrations that
    /// have not run yet. Safe to call on every start and from several processes at once:
    /// sqlx serialises migrations with an advisory lock.
    ///
    /// # Errors
    /// [`PostgresError::Migrate`] when a migration fails or the database is unreachable.
    pub async fn migrate(&self) -> Result<(), PostgresError> {
        if let Some(schema) = &self.schema {
            // The name was checked to be a plain identifier by the builder: safe to splice.
            sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")))
                .execute(&self.pool)
                .await
                .map_err(|error| PostgresError::Migrate(error.into()))?;
        }
        MIGRATOR.run(&self.pool).await.map_err(PostgresError::Migrate)
    }

    async fn stored_events(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, RecordedEvent>, EventStoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ANY($1)");
        let rows = // Built from this module's column lists only.
        sqlx::query(AssertSqlSafe(sql))
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(|error| store_error("look up stored event ids", error))?;
        rows.iter().map(|row| recorded_event(row).map(|event| (event.event_id, event))).collect()
    }

    /// Decides what an append that was refused, or hit a stored event id, really was: a retry,
    /// a duplicate, or a conflict with the stream's version.
    async fn explain_refusal(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, EventStoreError> {
        let ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
        let stored = self.stored_events(&ids).await?;
        let records: Vec<&RecordedEvent> = ids.iter().filter_map(|id| stored.get(id)).collect();
        let Some(first) = records.first() else {
            let actual = self.stream_version(stream).await?;
            return Err(EventStoreError::Conflict { stream: stream.clone(), expected, actual });
        };
        retried_append(stream, expected, events, &records).ok_or_else(|| {
            EventStoreError::DuplicateEventId {
                event_id: first.event_id,
                stream: first.stream_id.clone(),
                version: first.stream_version,
            }
        })
    }
}

/// The version a one-event append at `expected` goes after, when it may be grouped: an exact
/// version or a new stream, while another append runs alongside (alone, the single-event
/// statement is sent at once).
fn groupable(expected: ExpectedVersion, events: &[NewEvent], alongside: bool) -> Option<i64> {
    if !alongside || events.len() != 1 {
        return None;
    }
    match expected {
        ExpectedVersion::NoStream => Some(0),
        ExpectedVersion::Exact(version) => i64::try_from(version.get()).ok(),
        ExpectedVersion::Any => None,
    }
}

/// Counts an append as running while it lives.
struct Appending<'a> {
    count: &'a AtomicUsize,
    /// Another append was running when this one started.
    alongside: bool,
}

impl<'a> Appending<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        let alongside = count.fetch_add(1, Ordering::AcqRel) > 0;
        Self { count, alongside }
    }
}

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

async fn stream_version_with<'e>(
    executor: impl PgExecutor<'e>,
    stream: &StreamId,
) -> Result<Version, EventStoreError> {
    let version: Option<i64> =
        sqlx::query_scalar("SELECT max(stream_version) FROM events WHERE stream_id = $1")
            .bind(stream.as_str())
            .fetch_one(executor)
            .await
            .map_err(|error| store_error("read a stream's version", error))?;
    match version {
        None => Ok(Version::ZERO),
        Some(version) => {
            u64::try_from(version).map(Version).map_err(|_| EventStoreError::Corrupt {
                position: Position::START,
                reason: format!("stream `{stream}` has version {version}"),
            })
        }
    }
}

impl EventStore for PostgresEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventStoreError> {
        if events.is_empty() {
            return Err(EventStoreError::EmptyAppend { stream: stream.clone() });
        }
        if let Some((first, event_id)) = repeated_event_id(&events) {
            let actual = self.stream_version(stream).await?;
            return Err(EventStoreError::DuplicateEventId {
                event_id,
                stream: stream.clone(),
                version: Version(actual.get() + first as u64 + 1),
            });
        }
        let expected_sql: Option<i64> = match expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(version) => Some(to_i64(version.get())),
        };
        let columns = EventColumns::of(events.iter())?;

        let appending = Appending::start(&self.appending);
        let mut attempts = 0;
        if let Some(after) = groupable(expected, &events, appending.alongside)
            && let [event] = &*events
        {
            let group = self.group.get_or_init(|| GroupCommit::start(self.pool.clone()));
            match group.append(stream.as_str(), after, event.clone()).await {
                Outcome::Written { writer, position } => {
                    let version = Version(after as u64 + 1);
                    let last_position = event_position(writer.into(), to_i64(position), || {
                        format!("the append to `{stream}`")
                    })?;
                    self.notifications.appended();
                    return Ok(AppendResult {
                        first_version: version,
                        last_version: version,
                        last_position,
                    });
                }
                Outcome::Refused => {
                    // As for a refusal of its own statement: sent again alone if the stream has
                    // reached the expected version since, explained otherwise.
                    attempts = 1;
                    if !expected.admits(self.stream_version(stream).await?) {
                        return self.explain_refusal(stream, expected, &events).await;
                    }
                }
                Outcome::Alone => {}
            }
        }
        let written = loop {
            attempts += 1;
            let statement = if events.len() == 1 { APPEND_ONE } else { APPEND };
            let query = sqlx::query(statement).bind(stream.as_str()).bind(expected_sql);
            let rows = if events.len() == 1 {
                columns.bind_first(query)
            } else {
                columns.bind_arrays(query)
            }
            .fetch(&self.pool);
            let error = match Written::read(rows).await {
                Ok(Some(written)) => break written,
                Ok(None) => {
                    // Nothing written: the stream was behind the expected version. If it has
                    // caught up since, the refusal is stale and the append goes again.
                    let retry = APPEND_RETRY.allows(attempts + 1)
                        && expected.admits(self.stream_version(stream).await?);
                    if retry {
                        continue;
                    }
                    return self.explain_refusal(stream, expected, &events).await;
                }
                Err(WriteError::Outcome(error)) => {
                    return Err(store_error("read an append's outcome", error));
                }
                Err(WriteError::Statement(error)) => error,
            };
            let violated = unique_violation(&error);
            // Under a serializable default, a race can end this way instead of a violation.
            let serialization = violated.is_none() && is_serialization_failure(&error);
            // Another writer took the versions an append at any version read.
            let versions_taken = violated == Some("events_stream_version_key")
                && matches!(expected, ExpectedVersion::Any);
            if (serialization || versions_taken) && APPEND_RETRY.allows(attempts + 1) {
                if serialization {
                    // The other transaction may still be running: give it a moment.
                    APPEND_RETRY.jitter(0.5).wait_before(attempts + 1, &*self.clock).await;
                }
                continue;
            }
            return match violated {
                Some("events_event_id_key" | "events_stream_version_key") => {
                    self.explain_refusal(stream, expected, &events).await
                }
                _ => Err(store_error("append events", error)),
            };
        };
        let appended = written.into_result(stream, events.len())?;
        self.notifications.appended();
        Ok(appended)
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        after: Version,
    ) -> BoxStream<'a, Result<RecordedEvent, EventStoreError>> {
        // One query whose rows are decoded as they arrive: a long stream is never held in
        // memory whole, and it costs one round trip and one plan, like a hand-written SELECT.
        // The stream holds a pooled connection until it is dropped or exhausted.
        sqlx::query(READ_STREAM.as_str())
            .bind(stream.as_str())
            .bind(to_i64(after.get()))
            .fetch(&self.pool)
            .map(|row| {
                row.map_err(|error| store_error("read a stream", error))
                    .and_then(|row| recorded_event(&row))
            })
            .boxed()
    }

    /// Six columns of each event instead of fourteen, borrowed from the row: no metadata, no
    /// position, no stream id (the caller named it), and nothing copied.
    fn read_stream_with<'a, T, F>(
        &'a self,
        stream: &'a StreamId,
        after: Version,
        mut read: F,
    ) -> BoxStream<'a, Result<T, EventStoreError>>
    where
        T: Send + 'a,
        F: FnMut(StoredEvent<'_>) -> T + Send + 'a,
    {
        sqlx::query(READ_STREAM_STORED.as_str())
            .bind(stream.as_str())
            .bind(to_i64(after.get()))
            .fetch(&self.pool)
            .map(move |row| {
                let row = row.map_err(|error| store_error("read a stream", error))?;
                Ok(read(stored_event(&row, stream)?))
            })
            .boxed()
    }

    /// The snapshot and the events after it in one query, one round trip.
    fn read_stream_from_snapshot<'a, T, F>(
        &'a self,
        stream: &'a StreamId,
        schema_version: u32,
        format: &'a str,
        mut read: F,
    ) -> BoxStream<'a, Result<StreamPart<T>, EventStoreError>>
    where
        T: Send + 'a,
        F: FnMut(StoredEvent<'_>) -> T + Send + 'a,
    {
        let mut last = None;
        sqlx::query(READ_FROM_SNAPSHOT.as_str())
            .bind(stream.as_str())
            .bind(i64::from(schema_version))
            .bind(format)
            .fetch(&self.pool)
            .flat_map(move |row| {
                let mut parts = Vec::with_capacity(2);
                let row = match row {
                    Ok(row) => row,
                    Err(error) => {
                        parts.push(Err(store_error("read a stream from its snapshot", error)));
                        return futures::stream::iter(parts);
                    }
                };
                if last.is_none() {
                    match snapshot_after_events(&row, stream) {
                        Ok(Some(snapshot)) => {
                            last = Some(snapshot.version);
                            parts.push(Ok(StreamPart::Snapshot(snapshot)));
                        }
                        Ok(None) => {}
                        Err(error) => parts.push(Err(error)),
                    }
                }
                let event: Result<Option<i64>, _> = row.try_get(0);
                if let Err(error) = event {
                    parts.push(Err(store_error("read a stream from its snapshot", error)));
                } else if let Ok(Some(_)) = event {
                    parts.push(stored_event(&row, stream).and_then(|event| {
                        if last.is_some_and(|last| event.stream_version <= last) {
                            return Err(EventStoreError::Corrupt {
                                position: Position::START,
                                reason: format!(
                                    "stream `{stream}`: version {} read after {last:?}",
                                    event.stream_version
                                ),
                            });
                        }
                        last = Some(event.stream_version);
                        Ok(StreamPart::Event(read(event)))
                    }));
                }
                futures::stream::iter(parts)
            })
            .boxed()
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The log is ordered by (transaction id, position), and only rows of transactions
        // older than every transaction still running are returned: a transaction that has not
        // finished, or not yet written, can only add rows after them. See
        // docs/adr/0001-postgres-event-store.md.
        let rows = sqlx::query(READ_ALL.as_str())
            .bind(to_i64(after.transaction()))
            .bind(to_i64(after.sequence()))
            .bind(to_i64(limit as u64))
            .fetch_all(&self.pool)
            .await
            .map_err(|error| store_error("read the global log", error))?;
        rows.iter().map(recorded_event).collect()
    }

    async fn count_after(&self, after: Position) -> Result<u64, EventStoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events \
             WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2)",
        )
        .bind(to_i64(after.transaction()))
        .bind(to_i64(after.sequence()))
        .fetch_one(&self.pool)
        .await
        .map_err(|error| store_error("count the global log", error))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, EventStoreError> {
        stream_version_with(&self.pool, stream).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        sqlx::query(
            "INSERT INTO snapshots AS s \
                 (stream_id, version, schema_version, payload_format, state, taken_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (stream_id) DO UPDATE SET \
                 version = EXCLUDED.version, schema_version = EXCLUDED.schema_version, \
                 payload_format = EXCLUDED.payload_format, state = EXCLUDED.state, \
                 taken_at = EXCLUDED.taken_at \
             WHERE s.version <= EXCLUDED.version",
        )
        .bind(snapshot.stream_id.as_str())
        .bind(to_i64(snapshot.version.get()))
        .bind(i64::from(snapshot.schema_version))
        .bind(&snapshot.format)
        .bind(&snapshot.state)
        .bind(snapshot.taken_at)
        .execute(&self.pool)
        .await
        .map_err(|error| store_error("save a snapshot", error))?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, EventStoreError> {
        let sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE stream_id = $1");
        let row = // Built from this module's column lists only.
        sqlx::query(AssertSqlSafe(sql))
            .bind(stream.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| store_error("load a snapshot", error))?;
        row.as_ref().map(snapshot).transpose()
    }

    async fn event(&self, id: Uuid) -> Result<Option<RecordedEvent>, EventStoreError> {
        // The unique index on `event_id` makes this one index lookup.
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1");
        let row = // Built from this module's column lists only.
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| store_error("look up an event by id", error))?;
        row.as_ref().map(recorded_event).transpose()
    }

    /// The last event committed, by `(transaction_id, position)`: one step down the index.
    async fn head(&self) -> Result<Position, EventStoreError> {
        let head: Option<(Xid8, i64)> = sqlx::query_as(
            "SELECT transaction_id, position FROM events \
             ORDER BY transaction_id DESC, position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| store_error("read the head of the log", error))?;
        let Some((Xid8(transaction), sequence)) = head else {
            return Ok(Position::START);
        };
        event_position(transaction.into(), sequence, || "the head of the log".to_owned())
    }

    /// Woken by every append of this process at once, and by those of other processes through
    /// `LISTEN/NOTIFY` (see the `notify` module docs); the first call starts listening.
    fn appends(&self) -> Appends {
        self.notifications.subscribe()
    }
}
