//! The same bank-account workload written idiomatically in Composable and in cqrs-es 0.5 with
//! postgres-es 0.5, against one PostgreSQL server in one run.
//!
//! ```text
//! DATABASE_URL=postgres://... cargo bench -p composable-versus --bench versus
//! ```
//!
//! The aggregate is a bank account: `OpenAccount { account_id }` and `Deposit { amount }`, which
//! record `AccountOpened` and `Deposited { amount }`; a deposit on an account that is not open is
//! refused. Composable stores its events with its default codec (bincode), cqrs-es as JSON, each
//! in a database of its own on the same server (`versus_composable`, `versus_cqrs`, dropped and
//! made anew for each settings mode). Both pools hold 16 connections. Each figure is the median
//! of `BENCH_ROUNDS` rounds (default 3); the framework that goes first alternates from round to
//! round, and a `CHECKPOINT` precedes every timed section, so a checkpoint never lands in one
//! side's timing.
//!
//! 1. `1 client`: one account opened, then `BENCH_SEQUENTIAL` (default 2000) deposits one after
//!    the other. Neither side snapshots, so every command loads the stream so far.
//! 2. `16 clients`: 16 tasks, each depositing on its own account, `BENCH_CONCURRENT` (default
//!    8000) deposits in all. Its ceiling, reported beside it as Composable / raw: 16 tasks doing
//!    as many single-row `INSERT`s (one statement each, autocommit) into a plain table made
//!    `LIKE` Composable's `events` table (the same columns, defaults and indexes), of rows copied
//!    from one the store wrote.
//!
//!    Rows 1, 2 and 4 are measured a second time through a runner with its hot-aggregate cache
//!    on (`AggregateRunner::with_cache`, on accounts of their own), which decides a command on
//!    the state the last one left and appends without loading; cqrs-es has no such cache, so
//!    those rows divide by the same cqrs-es figure.
//! 3. `load, no snapshots`: a stream of `BENCH_STREAM` (default 5000) events, written in bulk
//!    (Composable: `EventStore::append` in batches; cqrs-es: its repository's `persist`), loaded
//!    `BENCH_LOADS` (default 200) times: `AggregateRunner::load` against
//!    `PersistedEventStore::load_aggregate` (read, decode, apply).
//! 4. `command, no snapshots`: `BENCH_LOADS` deposits on that stream, each loading all of it.
//! 5. `load, snapshots every 100`: an aggregate snapshotted every 100 events (Composable:
//!    `snapshot_every = 100`; cqrs-es: `postgres_snapshot_cqrs(.., 100, ..)`), with a stream of
//!    `BENCH_STREAM` (rounded down to a multiple of 100) + 50 events, so 50 past the last
//!    snapshot, loaded `BENCH_LOADS` times.
//! 6. Bytes per stored event: `pg_total_relation_size('events')` (heap, indexes, TOAST),
//!    `pg_relation_size('events')` (heap) over `count(*)`, and the average row
//!    (`pg_column_size`), after a `VACUUM FULL` (concurrent writers make PostgreSQL extend a
//!    table by up to 512 pages at once, which would swamp a small table): in each mode's
//!    databases after the workloads, and once in fresh databases holding the same
//!    `BENCH_BYTES` (default 10000) deposits over 100 accounts written by commands, where
//!    cqrs-es is measured twice: with its default empty metadata, and with metadata carrying
//!    what Composable stores with every event (a correlation id, a causation id and the time it
//!    occurred, as strings, through `execute_with_metadata`).
//!
//! Settings: each mode runs under the server's "test" settings (`fsync`, `synchronous_commit`
//! and `full_page_writes` off) and under "durable" ones (all three on): `BENCH_SETTINGS=test`,
//! `durable` or `both` (default). The bench switches them server-wide with `ALTER SYSTEM` and
//! `pg_reload_conf()` (it needs a superuser), sets `synchronous_commit` on its own databases too,
//! and restores the server's original settings at the end, even when a workload fails. A setting
//! given on the server's command line (`postgres -c fsync=off`) outranks `ALTER SYSTEM`: the
//! bench then says so and labels the mode with the settings in force.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up stops

use std::collections::HashMap;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use composable::{
    AggregateRunner, Bincode, EventMetadata, EventStore as _, ExpectedVersion, NewEvent, StreamId,
    Version, apply, command,
};
use composable_bench_support::{env_usize, median};
use composable_postgres::{PgConnectOptions, PostgresEventStore};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository as _, PersistedEventStore, SerializedEvent};
use cqrs_es::{Aggregate as _, DomainEvent, EventStore as _};
use postgres_es::{PostgresCqrs, PostgresEventRepository, postgres_cqrs, postgres_snapshot_cqrs};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

/// Concurrent clients of the `16 clients` workload, and connections in each pool.
const CLIENTS: usize = 16;
/// Events between snapshots, on both sides.
const SNAPSHOT_EVERY: usize = 100;
/// Events past the last snapshot in the snapshot workload.
const PAST_SNAPSHOT: usize = 50;
/// States the cached runner keeps: one per account of the `16 clients` workload, and room.
const CACHE: std::num::NonZeroUsize = std::num::NonZeroUsize::new(1024).unwrap();
/// Accounts the bytes workload spreads its deposits over.
const BYTES_ACCOUNTS: usize = 100;

const COMPOSABLE_DB: &str = "versus_composable";
const CQRS_DB: &str = "versus_cqrs";
const BYTES_COMPOSABLE_DB: &str = "versus_bytes_composable";
const BYTES_CQRS_DB: &str = "versus_bytes_cqrs";
const BYTES_CQRS_METADATA_DB: &str = "versus_bytes_cqrs_metadata";

/// The tables postgres-es reads and writes: `db/init.sql` of its repository (shipped in the
/// postgres-es 0.5.0 crate), without its sample view table, row and user.
const CQRS_TABLES: &str = "
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);";

/// Why a command on an account is refused: the same on both sides.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BankError {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
}

// ---- Composable ------------------------------------------------------------------------------

#[composable::event(name = "account.opened", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AccountOpened {
    account_id: String,
}

#[composable::event(name = "account.deposited", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deposited {
    amount: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct OpenAccount {
    account_id: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Deposit {
    amount: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct BankAccount {
    open: bool,
    balance: u64,
}

#[composable::aggregate(stream = "account", vis = "pub(crate)")]
impl BankAccount {
    #[command]
    fn open(&self, cmd: OpenAccount) -> Result<AccountOpened, BankError> {
        if self.open {
            return Err(BankError::AlreadyOpen);
        }
        Ok(AccountOpened { account_id: cmd.account_id })
    }

    #[command]
    fn deposit(&self, cmd: Deposit) -> Result<Deposited, BankError> {
        if !self.open {
            return Err(BankError::NotOpen);
        }
        Ok(Deposited { amount: cmd.amount })
    }

    #[apply]
    fn opened(&mut self, _: &AccountOpened) {
        self.open = true;
    }

    #[apply]
    fn deposited(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

/// The same account, snapshotted every `SNAPSHOT_EVERY` events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SnapshotBankAccount {
    open: bool,
    balance: u64,
}

#[composable::aggregate(stream = "account", snapshot_every = 100, vis = "pub(crate)")]
impl SnapshotBankAccount {
    #[command]
    fn open(&self, cmd: OpenAccount) -> Result<AccountOpened, BankError> {
        if self.open {
            return Err(BankError::AlreadyOpen);
        }
        Ok(AccountOpened { account_id: cmd.account_id })
    }

    #[command]
    fn deposit(&self, cmd: Deposit) -> Result<Deposited, BankError> {
        if !self.open {
            return Err(BankError::NotOpen);
        }
        Ok(Deposited { amount: cmd.amount })
    }

    #[apply]
    fn opened(&mut self, _: &AccountOpened) {
        self.open = true;
    }

    #[apply]
    fn deposited(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

type Accounts = AggregateRunner<BankAccount, PostgresEventStore>;

// ---- cqrs-es ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    AccountOpened { account_id: String },
    Deposited { amount: u64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AccountOpened { .. } => "AccountOpened".to_string(),
            Self::Deposited { .. } => "Deposited".to_string(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountCommand {
    OpenAccount { account_id: String },
    Deposit { amount: u64 },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    open: bool,
    balance: u64,
}

impl cqrs_es::Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = BankError;
    type Services = ();

    async fn handle(
        &mut self,
        command: AccountCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), BankError> {
        match command {
            AccountCommand::OpenAccount { account_id } => {
                if self.open {
                    return Err(BankError::AlreadyOpen);
                }
                sink.write(AccountEvent::AccountOpened { account_id }, self).await;
            }
            AccountCommand::Deposit { amount } => {
                if !self.open {
                    return Err(BankError::NotOpen);
                }
                sink.write(AccountEvent::Deposited { amount }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::AccountOpened { .. } => self.open = true,
            AccountEvent::Deposited { amount } => self.balance += amount,
        }
    }
}

type Cqrs = PostgresCqrs<Account>;

// ---- the server ------------------------------------------------------------------------------

/// The durability settings the modes switch.
const SETTINGS: [&str; 3] = ["fsync", "synchronous_commit", "full_page_writes"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Test,
    Durable,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Test => "test",
            Self::Durable => "durable",
        }
    }

    fn value(self) -> &'static str {
        match self {
            Self::Test => "off",
            Self::Durable => "on",
        }
    }
}

/// One setting as the server had it before the bench.
struct Original {
    name: &'static str,
    value: String,
    /// Set with `ALTER SYSTEM` before the bench: restored the same way, not reset.
    in_auto_conf: bool,
}

struct Server {
    options: PgConnectOptions,
    url: String,
}

impl Server {
    async fn connect(&self, database: &str) -> PgConnection {
        PgConnection::connect_with(&self.options.clone().database(database))
            .await
            .expect("connect to DATABASE_URL")
    }

    /// Drops `database` if it exists and makes it anew, with `mode`'s `synchronous_commit` set
    /// on it (a database's setting outranks one given on the server's command line).
    async fn recreate(&self, admin: &mut PgConnection, database: &str, mode: Mode) {
        execute(admin, format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)")).await;
        execute(admin, format!("CREATE DATABASE \"{database}\"")).await;
        execute(
            admin,
            format!("ALTER DATABASE \"{database}\" SET synchronous_commit = {}", mode.value()),
        )
        .await;
    }

    async fn drop_database(&self, admin: &mut PgConnection, database: &str) {
        execute(admin, format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)")).await;
    }

    async fn composable(&self, database: &str) -> PostgresEventStore {
        let store = PostgresEventStore::builder()
            .connect_options(self.options.clone().database(database))
            .max_connections(CLIENTS as u32)
            .connect()
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    async fn cqrs_pool(&self, database: &str) -> sqlx08::PgPool {
        let options = sqlx08::postgres::PgConnectOptions::from_str(&self.url)
            .expect("DATABASE_URL is a valid URL")
            .database(database);
        let pool = sqlx08::postgres::PgPoolOptions::new()
            .max_connections(CLIENTS as u32)
            .connect_with(options)
            .await
            .unwrap();
        sqlx08::raw_sql(CQRS_TABLES).execute(&pool).await.unwrap();
        pool
    }
}

async fn execute(connection: &mut PgConnection, sql: String) {
    sqlx::query(AssertSqlSafe(sql)).execute(connection).await.unwrap();
}

async fn read_originals(admin: &mut PgConnection) -> Vec<Original> {
    let mut originals = Vec::new();
    for name in SETTINGS {
        let (value, source, file): (String, String, Option<String>) =
            sqlx::query_as("SELECT setting, source, sourcefile FROM pg_settings WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *admin)
                .await
                .unwrap();
        let in_auto_conf = source == "configuration file"
            && file.is_some_and(|file| file.ends_with("postgresql.auto.conf"));
        originals.push(Original { name, value, in_auto_conf });
    }
    originals
}

async fn reload(admin: &mut PgConnection) {
    sqlx::query("SELECT pg_reload_conf()").execute(admin).await.unwrap();
}

async fn apply_mode(admin: &mut PgConnection, mode: Mode) {
    for name in SETTINGS {
        execute(admin, format!("ALTER SYSTEM SET {name} = {}", mode.value())).await;
    }
    reload(admin).await;
}

/// The settings a new connection to `database` gets, once they are `mode`'s or after 5 s.
async fn settings_in_force(server: &Server, database: &str, mode: Mode) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut connection = server.connect(database).await;
        let mut settings = Vec::new();
        for name in SETTINGS {
            let value: String = sqlx::query_scalar("SELECT current_setting($1)")
                .bind(name)
                .fetch_one(&mut connection)
                .await
                .unwrap();
            settings.push((name.to_owned(), value));
        }
        connection.close().await.unwrap();
        if settings.iter().all(|(_, value)| value == mode.value()) || Instant::now() > deadline {
            return settings;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Puts the server's settings back as they were: `ALTER SYSTEM RESET` for those the bench found
/// outside `postgresql.auto.conf`, `ALTER SYSTEM SET` of the old value for those it found in it.
async fn restore(server: &Server, originals: &[Original]) {
    let mut admin = server.connect("postgres").await;
    for original in originals {
        let sql = if original.in_auto_conf {
            format!("ALTER SYSTEM SET {} = '{}'", original.name, literal(&original.value))
        } else {
            format!("ALTER SYSTEM RESET {}", original.name)
        };
        execute(&mut admin, sql).await;
    }
    reload(&mut admin).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut connection = server.connect("postgres").await;
        let mut differ = Vec::new();
        for original in originals {
            let value: String = sqlx::query_scalar("SELECT current_setting($1)")
                .bind(original.name)
                .fetch_one(&mut connection)
                .await
                .unwrap();
            if value != original.value {
                differ.push(original);
            }
        }
        if differ.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for original in differ {
                eprintln!(
                    "versus: {} did not come back to {}; setting it with ALTER SYSTEM",
                    original.name, original.value
                );
                let sql =
                    format!("ALTER SYSTEM SET {} = '{}'", original.name, literal(&original.value));
                execute(&mut admin, sql).await;
            }
            reload(&mut admin).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `value` as the inside of a quoted SQL literal.
fn literal(value: &str) -> String {
    value.replace('\'', "''")
}

async fn checkpoint(admin: &mut PgConnection) {
    sqlx::query("CHECKPOINT").execute(admin).await.unwrap();
}

/// Times `work` after a checkpoint.
async fn timed(admin: &mut PgConnection, work: impl AsyncFnOnce()) -> Duration {
    checkpoint(admin).await;
    let started = Instant::now();
    work().await;
    started.elapsed()
}

/// Times both sides, Composable first in even rounds and cqrs-es first in odd ones.
async fn timed_pair(
    admin: &mut PgConnection,
    round: usize,
    composable: impl AsyncFnOnce(),
    cqrs: impl AsyncFnOnce(),
) -> (Duration, Duration) {
    if round.is_multiple_of(2) {
        let ours = timed(admin, composable).await;
        let theirs = timed(admin, cqrs).await;
        (ours, theirs)
    } else {
        let theirs = timed(admin, cqrs).await;
        let ours = timed(admin, composable).await;
        (ours, theirs)
    }
}

// ---- bulk writes -----------------------------------------------------------------------------

/// Appends `count` events to `stream` in batches: one `AccountOpened`, then `Deposited { 1 }`s.
async fn append_account_events(store: &PostgresEventStore, stream: &StreamId, count: usize) {
    let metadata = EventMetadata::new_flow(chrono::Utc::now());
    let opened = NewEvent::encode(
        &BankAccountEvent::from(AccountOpened { account_id: stream.id().to_owned() }),
        &Bincode,
        metadata.clone(),
    )
    .unwrap();
    let deposited =
        NewEvent::encode(&BankAccountEvent::from(Deposited { amount: 1 }), &Bincode, metadata)
            .unwrap();
    let mut written = 0;
    while written < count {
        let events: Vec<NewEvent> = (written..count.min(written + 10_000))
            .map(|index| {
                let event = if index == 0 { &opened } else { &deposited };
                NewEvent { event_id: Uuid::now_v7(), ..event.clone() }
            })
            .collect();
        let expected = ExpectedVersion::Exact(Version(written as u64));
        written += events.len();
        store.append(stream, expected, events).await.unwrap();
    }
}

/// The same through postgres-es's repository, in transactions of 1000 events.
async fn persist_account_events(pool: &sqlx08::PgPool, id: &str, count: usize) {
    let repo = PostgresEventRepository::new(pool.clone());
    let metadata = serde_json::to_value(HashMap::<String, String>::new()).unwrap();
    let events: Vec<SerializedEvent> = (1..=count)
        .map(|sequence| {
            let event = if sequence == 1 {
                AccountEvent::AccountOpened { account_id: id.to_owned() }
            } else {
                AccountEvent::Deposited { amount: 1 }
            };
            SerializedEvent::new(
                id.to_owned(),
                sequence,
                Account::TYPE.to_owned(),
                event.event_type(),
                event.event_version(),
                serde_json::to_value(&event).unwrap(),
                metadata.clone(),
            )
        })
        .collect();
    for chunk in events.chunks(1000) {
        repo.persist::<Account>(chunk, None).await.unwrap();
    }
}

// ---- the raw ceiling -------------------------------------------------------------------------

/// Single-row inserts into `raw_events`, a table made `LIKE` the store's `events`, of a row the
/// store wrote: the same values in every column without a default, except a stream, version and
/// event id of its own. Built from the catalogue, so it follows the store's table as it changes.
struct RawInsert {
    sql: Arc<str>,
    template: Vec<Option<String>>,
    stream: usize,
    version: usize,
    event_id: usize,
}

impl RawInsert {
    async fn prepare(pool: &sqlx::PgPool, stream: &str, version: i64) -> Self {
        sqlx::query("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
            .execute(pool)
            .await
            .unwrap();
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
               FROM pg_attribute a \
              WHERE a.attrelid = 'events'::regclass AND a.attnum > 0 AND NOT a.attisdropped \
                AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '' \
              ORDER BY a.attnum",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let position = |name: &str| {
            columns
                .iter()
                .position(|(column, _)| column == name)
                .unwrap_or_else(|| panic!("the store's events table has no column {name}"))
        };
        let (stream_at, version_at, event_id_at) =
            (position("stream_id"), position("stream_version"), position("event_id"));
        let names: Vec<String> = columns.iter().map(|(name, _)| format!("\"{name}\"")).collect();
        let select = format!(
            "SELECT ARRAY[{}] FROM events WHERE stream_id = $1 AND stream_version = $2",
            names.iter().map(|name| format!("{name}::text")).collect::<Vec<_>>().join(", ")
        );
        let template: Vec<Option<String>> = sqlx::query_scalar(AssertSqlSafe(select))
            .bind(stream)
            .bind(version)
            .fetch_one(pool)
            .await
            .unwrap();
        let values: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(index, (_, ty))| format!("${}::{ty}", index + 1))
            .collect();
        let sql =
            format!("INSERT INTO raw_events ({}) VALUES ({})", names.join(", "), values.join(", "));
        Self {
            sql: sql.into(),
            template,
            stream: stream_at,
            version: version_at,
            event_id: event_id_at,
        }
    }

    async fn insert(&self, pool: &sqlx::PgPool, stream: &str, version: usize) {
        let mut query = sqlx::query(AssertSqlSafe(self.sql.clone()));
        for (index, value) in self.template.iter().enumerate() {
            let value = if index == self.stream {
                Some(stream.to_owned())
            } else if index == self.version {
                Some(version.to_string())
            } else if index == self.event_id {
                Some(Uuid::now_v7().to_string())
            } else {
                value.clone()
            };
            query = query.bind(value);
        }
        query.execute(pool).await.unwrap();
    }
}

// ---- one mode --------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Sizes {
    rounds: usize,
    sequential: usize,
    concurrent: usize,
    stream: usize,
    loads: usize,
    bytes: usize,
}

struct Row {
    name: String,
    operations: usize,
    composable: Duration,
    /// The same workload through a runner with its hot-aggregate cache on, where it applies.
    cached: Option<Duration>,
    cqrs: Duration,
}

fn rate(operations: usize, time: Duration) -> f64 {
    operations as f64 / time.as_secs_f64()
}

/// What the `events` table of one database takes per event.
struct Bytes {
    /// Heap, indexes and TOAST.
    total: f64,
    /// The heap alone, pages as filled.
    heap: f64,
    /// The average row (`pg_column_size` of the whole row: header and data), which does not
    /// depend on how full the pages are.
    row: f64,
    events: i64,
}

impl Bytes {
    async fn of(server: &Server, database: &str) -> Self {
        let mut connection = server.connect(database).await;
        // Packed first, on both sides alike: while several writers wait to extend a table,
        // PostgreSQL extends it by up to 512 pages at once, which would swamp a small table.
        sqlx::query("VACUUM FULL events").execute(&mut connection).await.unwrap();
        let (total, heap, row, events): (i64, i64, f64, i64) = sqlx::query_as(
            "SELECT pg_total_relation_size('events'), pg_relation_size('events'), \
                    avg(pg_column_size(e.*))::float8, count(*) \
               FROM events e",
        )
        .fetch_one(&mut connection)
        .await
        .unwrap();
        connection.close().await.unwrap();
        Self { total: total as f64 / events as f64, heap: heap as f64 / events as f64, row, events }
    }

    /// The rows of a bytes table: its name and the figure of each side.
    fn rows<const N: usize>(sides: [&Self; N]) -> [(&'static str, [f64; N]); 3] {
        [
            ("events table with indexes", sides.map(|side| side.total)),
            ("heap only", sides.map(|side| side.heap)),
            ("average row (pg_column_size)", sides.map(|side| side.row)),
        ]
    }
}

/// Runs every workload under `mode` and prints its tables.
async fn run_mode(server: &Server, admin: &mut PgConnection, mode: Mode, sizes: Sizes) {
    let Sizes { rounds, sequential, concurrent, stream, loads, .. } = sizes;
    apply_mode(admin, mode).await;
    server.recreate(admin, COMPOSABLE_DB, mode).await;
    server.recreate(admin, CQRS_DB, mode).await;
    let settings = settings_in_force(server, COMPOSABLE_DB, mode).await;
    let cqrs_settings = settings_in_force(server, CQRS_DB, mode).await;
    assert_eq!(settings, cqrs_settings, "both databases run under the same settings");

    let store = server.composable(COMPOSABLE_DB).await;
    let accounts = Arc::new(Accounts::new(store.clone(), ()));
    let cached = Arc::new(Accounts::new(store.clone(), ()).with_cache(CACHE));
    let snapshotted = AggregateRunner::<SnapshotBankAccount, _>::new(store.clone(), ());
    let pool = server.cqrs_pool(CQRS_DB).await;
    let cqrs: Arc<Cqrs> = Arc::new(postgres_cqrs(pool.clone(), Vec::new(), ()));
    let cqrs_snapshots: Cqrs = postgres_snapshot_cqrs(pool.clone(), Vec::new(), SNAPSHOT_EVERY, ());
    let event_store = PersistedEventStore::<_, Account>::new_event_store(
        PostgresEventRepository::new(pool.clone()),
    );
    let snapshot_store = PersistedEventStore::<_, Account>::new_snapshot_store(
        PostgresEventRepository::new(pool.clone()),
        SNAPSHOT_EVERY,
    );

    // The raw table copies a deposit the store wrote.
    accounts.execute("template", OpenAccount { account_id: "template".into() }).await.unwrap();
    accounts.execute("template", Deposit { amount: 1 }).await.unwrap();
    let template = accounts.stream_id("template").unwrap();
    let raw = Arc::new(RawInsert::prepare(store.pool(), template.as_str(), 2).await);
    // The same two events on the other side, so both hold as many.
    cqrs.execute("template", AccountCommand::OpenAccount { account_id: "template".into() })
        .await
        .unwrap();
    cqrs.execute("template", AccountCommand::Deposit { amount: 1 }).await.unwrap();

    let mut rows = Vec::new();

    // 1. one client, sequential deposits on one account
    eprintln!("versus: {}: 1 client", mode.name());
    let (mut ours, mut theirs, mut ours_cached) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let id = format!("sequential-{round}");
        let cached_id = format!("sequential-cached-{round}");
        cached.execute(&cached_id, OpenAccount { account_id: cached_id.clone() }).await.unwrap();
        ours_cached.push(
            timed(admin, async || {
                for _ in 0..sequential {
                    cached.execute(&cached_id, Deposit { amount: 1 }).await.unwrap();
                }
            })
            .await,
        );
        accounts.execute(&id, OpenAccount { account_id: id.clone() }).await.unwrap();
        cqrs.execute(&id, AccountCommand::OpenAccount { account_id: id.clone() }).await.unwrap();
        let (a, b) = timed_pair(
            admin,
            round,
            async || {
                for _ in 0..sequential {
                    accounts.execute(&id, Deposit { amount: 1 }).await.unwrap();
                }
            },
            async || {
                for _ in 0..sequential {
                    cqrs.execute(&id, AccountCommand::Deposit { amount: 1 }).await.unwrap();
                }
            },
        )
        .await;
        ours.push(a);
        theirs.push(b);
        let loaded = accounts.load(&id).await.unwrap();
        assert_eq!(loaded.state.balance, sequential as u64);
    }
    rows.push(Row {
        name: format!("1 client: {sequential} deposits on one account (commands/s)"),
        operations: sequential,
        composable: median(ours),
        cached: Some(median(ours_cached)),
        cqrs: median(theirs),
    });

    // 2. 16 clients, each on its own account; and the raw ceiling
    eprintln!("versus: {}: {CLIENTS} clients", mode.name());
    let each = concurrent / CLIENTS;
    let (mut ours, mut theirs, mut ceiling) = (Vec::new(), Vec::new(), Vec::new());
    let mut ours_cached = Vec::new();
    for round in 0..rounds {
        let ids: Vec<String> = (0..CLIENTS).map(|client| format!("c{round}-{client}")).collect();
        let cached_ids: Vec<String> =
            (0..CLIENTS).map(|client| format!("cached-c{round}-{client}")).collect();
        for id in &cached_ids {
            cached.execute(id, OpenAccount { account_id: id.clone() }).await.unwrap();
        }
        ours_cached.push(
            timed(admin, async || {
                let tasks: Vec<_> = cached_ids
                    .iter()
                    .map(|id| {
                        let (cached, id) = (cached.clone(), id.clone());
                        tokio::spawn(async move {
                            for _ in 0..each {
                                cached.execute(&id, Deposit { amount: 1 }).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            })
            .await,
        );
        for id in &ids {
            accounts.execute(id, OpenAccount { account_id: id.clone() }).await.unwrap();
            cqrs.execute(id, AccountCommand::OpenAccount { account_id: id.clone() }).await.unwrap();
        }
        let (a, b) = timed_pair(
            admin,
            round,
            async || {
                let tasks: Vec<_> = ids
                    .iter()
                    .map(|id| {
                        let (accounts, id) = (accounts.clone(), id.clone());
                        tokio::spawn(async move {
                            for _ in 0..each {
                                accounts.execute(&id, Deposit { amount: 1 }).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            },
            async || {
                let tasks: Vec<_> = ids
                    .iter()
                    .map(|id| {
                        let (cqrs, id) = (cqrs.clone(), id.clone());
                        tokio::spawn(async move {
                            for _ in 0..each {
                                cqrs.execute(&id, AccountCommand::Deposit { amount: 1 })
                                    .await
                                    .unwrap();
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            },
        )
        .await;
        ours.push(a);
        theirs.push(b);
        ceiling.push(
            timed(admin, async || {
                let tasks: Vec<_> = (0..CLIENTS)
                    .map(|client| {
                        let (raw, pool) = (raw.clone(), store.pool().clone());
                        let stream = format!("raw-{round}-{client}");
                        tokio::spawn(async move {
                            for version in 1..=each {
                                raw.insert(&pool, &stream, version).await;
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            })
            .await,
        );
    }
    let concurrent_row = Row {
        name: format!(
            "{CLIENTS} clients: {} deposits, one account each (commands/s)",
            each * CLIENTS
        ),
        operations: each * CLIENTS,
        composable: median(ours),
        cached: Some(median(ours_cached)),
        cqrs: median(theirs),
    };
    let ceiling = median(ceiling);
    rows.push(concurrent_row);

    // 3. loads of a long stream without snapshots
    eprintln!("versus: {}: load {stream} events", mode.name());
    append_account_events(&store, &accounts.stream_id("long").unwrap(), stream).await;
    persist_account_events(&pool, "long", stream).await;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (a, b) = timed_pair(
            admin,
            round,
            async || {
                for _ in 0..loads {
                    let loaded = accounts.load("long").await.unwrap();
                    assert_eq!(loaded.version, Version(stream as u64));
                }
            },
            async || {
                for _ in 0..loads {
                    let loaded = event_store.load_aggregate("long").await.unwrap();
                    assert_eq!(loaded.current_sequence, stream);
                }
            },
        )
        .await;
        ours.push(a);
        theirs.push(b);
    }
    rows.push(Row {
        name: format!("load {stream}-event stream, no snapshots (loads/s)"),
        operations: loads,
        composable: median(ours),
        cached: None,
        cqrs: median(theirs),
    });

    // 4. commands on that stream
    eprintln!("versus: {}: commands on {stream} events", mode.name());
    let (mut ours, mut theirs, mut ours_cached) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // The cached runner loads the stream for its first command, as a new process would.
        ours_cached.push(
            timed(admin, async || {
                for _ in 0..loads {
                    cached.execute("long", Deposit { amount: 1 }).await.unwrap();
                }
            })
            .await,
        );
        let (a, b) = timed_pair(
            admin,
            round,
            async || {
                for _ in 0..loads {
                    accounts.execute("long", Deposit { amount: 1 }).await.unwrap();
                }
            },
            async || {
                for _ in 0..loads {
                    cqrs.execute("long", AccountCommand::Deposit { amount: 1 }).await.unwrap();
                }
            },
        )
        .await;
        ours.push(a);
        theirs.push(b);
    }
    rows.push(Row {
        name: format!("command on that stream, no snapshots (commands/s, from {stream} events)"),
        operations: loads,
        composable: median(ours),
        cached: Some(median(ours_cached)),
        cqrs: median(theirs),
    });

    // 5. loads with snapshots every 100 events, 50 events past the last one
    eprintln!("versus: {}: load with snapshots", mode.name());
    let snapshot_at = (stream / SNAPSHOT_EVERY).max(1) * SNAPSHOT_EVERY;
    let length = snapshot_at + PAST_SNAPSHOT;
    // Written in bulk up to one event short of the snapshot; the command that reaches it
    // snapshots, and the rest are ordinary commands.
    append_account_events(&store, &snapshotted.stream_id("snap").unwrap(), snapshot_at - 1).await;
    persist_account_events(&pool, "snap", snapshot_at - 1).await;
    for _ in snapshot_at..=length {
        snapshotted.execute("snap", Deposit { amount: 1 }).await.unwrap();
        cqrs_snapshots.execute("snap", AccountCommand::Deposit { amount: 1 }).await.unwrap();
    }
    let expected_balance = (length - 1) as u64;
    let loaded = snapshotted.load("snap").await.unwrap();
    assert_eq!(
        (loaded.snapshot, loaded.version, loaded.state.balance),
        (Some(Version(snapshot_at as u64)), Version(length as u64), expected_balance)
    );
    let theirs_loaded = snapshot_store.load_aggregate("snap").await.unwrap();
    assert_eq!(theirs_loaded.current_sequence, length);
    assert!(theirs_loaded.current_snapshot.is_some(), "cqrs-es loads from a snapshot");
    let mut notes = Vec::new();
    if theirs_loaded.aggregate.balance != expected_balance {
        notes.push(format!(
            "cqrs-es's snapshot load gives balance {} where its events sum to {expected_balance}",
            theirs_loaded.aggregate.balance
        ));
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (a, b) = timed_pair(
            admin,
            round,
            async || {
                for _ in 0..loads {
                    let loaded = snapshotted.load("snap").await.unwrap();
                    assert_eq!(loaded.version, Version(length as u64));
                }
            },
            async || {
                for _ in 0..loads {
                    let loaded = snapshot_store.load_aggregate("snap").await.unwrap();
                    assert_eq!(loaded.current_sequence, length);
                }
            },
        )
        .await;
        ours.push(a);
        theirs.push(b);
    }
    rows.push(Row {
        name: format!(
            "load with snapshots every {SNAPSHOT_EVERY} events, {length} events (loads/s)"
        ),
        operations: loads,
        composable: median(ours),
        cached: None,
        cqrs: median(theirs),
    });

    // 6. bytes per event after the workloads
    store.pool().close().await;
    pool.close().await;
    let ours_bytes = Bytes::of(server, COMPOSABLE_DB).await;
    let theirs_bytes = Bytes::of(server, CQRS_DB).await;

    let in_force: Vec<String> =
        settings.iter().map(|(name, value)| format!("{name}={value}")).collect();
    let mut out = String::new();
    writeln!(out, "\n### {} settings ({})\n", mode.name(), in_force.join(", ")).unwrap();
    if settings.iter().any(|(_, value)| value != mode.value()) {
        writeln!(
            out,
            "> not all settings are the mode's: a setting given on the server's command line \
             (`-c`) outranks ALTER SYSTEM (synchronous_commit is also set per database, which \
             outranks it); start the server with them in its configuration file to switch them.\n"
        )
        .unwrap();
    }
    writeln!(out, "| workload | composable /s | cqrs-es /s | ratio |").unwrap();
    writeln!(out, "|---|---:|---:|---:|").unwrap();
    for row in &rows {
        let (a, b) = (rate(row.operations, row.composable), rate(row.operations, row.cqrs));
        writeln!(out, "| {} | {a:.0} | {b:.0} | {:.2} |", row.name, a / b).unwrap();
        if let Some(cached) = row.cached {
            let a = rate(row.operations, cached);
            writeln!(out, "| … with the runner's cache on | {a:.0} | {b:.0} | {:.2} |", a / b)
                .unwrap();
        }
    }
    let concurrent = &rows[1];
    let raw_rate = rate(concurrent.operations, ceiling);
    writeln!(
        out,
        "\nraw ceiling for {CLIENTS} clients: {raw_rate:.0} single-row INSERTs/s into a copy of \
         Composable's events table; composable / raw = {:.2} ({:.2} with the cache), \
         cqrs-es / raw = {:.2}",
        rate(concurrent.operations, concurrent.composable) / raw_rate,
        concurrent.cached.map_or(0.0, |cached| rate(concurrent.operations, cached) / raw_rate),
        rate(concurrent.operations, concurrent.cqrs) / raw_rate,
    )
    .unwrap();
    writeln!(
        out,
        "\n| bytes per stored event, after the workloads ({} and {} events) | composable | \
         cqrs-es | ratio |",
        ours_bytes.events, theirs_bytes.events
    )
    .unwrap();
    writeln!(out, "|---|---:|---:|---:|").unwrap();
    for (name, [ours, theirs]) in Bytes::rows([&ours_bytes, &theirs_bytes]) {
        writeln!(out, "| {name} | {ours:.0} | {theirs:.0} | {:.2} |", ours / theirs).unwrap();
    }
    for note in notes {
        writeln!(out, "\nnote: {note}").unwrap();
    }
    println!("{out}");

    server.drop_database(admin, COMPOSABLE_DB).await;
    server.drop_database(admin, CQRS_DB).await;
}

/// The metadata of cqrs-es's second bytes variant: what Composable stores with every event.
fn composable_like_metadata() -> HashMap<String, String> {
    let flow = Uuid::now_v7().to_string();
    HashMap::from([
        ("correlation_id".to_owned(), flow.clone()),
        ("causation_id".to_owned(), flow),
        (
            "occurred_at".to_owned(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        ),
    ])
}

/// `deposits` deposits over `BYTES_ACCOUNTS` accounts, by `CLIENTS` tasks, on each side, in
/// fresh databases; prints the bytes each stores per event.
async fn bytes_workload(server: &Server, admin: &mut PgConnection, mode: Mode, deposits: usize) {
    eprintln!("versus: bytes, {deposits} deposits over {BYTES_ACCOUNTS} accounts");
    for database in [BYTES_COMPOSABLE_DB, BYTES_CQRS_DB, BYTES_CQRS_METADATA_DB] {
        server.recreate(admin, database, mode).await;
    }
    let per_account = deposits / BYTES_ACCOUNTS;
    let store = server.composable(BYTES_COMPOSABLE_DB).await;
    let accounts = Arc::new(Accounts::new(store.clone(), ()));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let accounts = accounts.clone();
            tokio::spawn(async move {
                for account in (client..BYTES_ACCOUNTS).step_by(CLIENTS) {
                    let id = format!("account-{account}");
                    accounts.execute(&id, OpenAccount { account_id: id.clone() }).await.unwrap();
                    for _ in 0..per_account {
                        accounts.execute(&id, Deposit { amount: 1 }).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    store.pool().close().await;
    for (database, with_metadata) in [(BYTES_CQRS_DB, false), (BYTES_CQRS_METADATA_DB, true)] {
        let pool = server.cqrs_pool(database).await;
        let cqrs: Arc<Cqrs> = Arc::new(postgres_cqrs(pool.clone(), Vec::new(), ()));
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let cqrs = cqrs.clone();
                tokio::spawn(async move {
                    let metadata = || {
                        if with_metadata { composable_like_metadata() } else { HashMap::new() }
                    };
                    for account in (client..BYTES_ACCOUNTS).step_by(CLIENTS) {
                        let id = format!("account-{account}");
                        let open = AccountCommand::OpenAccount { account_id: id.clone() };
                        cqrs.execute_with_metadata(&id, open, metadata()).await.unwrap();
                        for _ in 0..per_account {
                            let deposit = AccountCommand::Deposit { amount: 1 };
                            cqrs.execute_with_metadata(&id, deposit, metadata()).await.unwrap();
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        pool.close().await;
    }
    let ours = Bytes::of(server, BYTES_COMPOSABLE_DB).await;
    let bare = Bytes::of(server, BYTES_CQRS_DB).await;
    let with_metadata = Bytes::of(server, BYTES_CQRS_METADATA_DB).await;
    let count = ours.events;
    let mut out = String::new();
    writeln!(
        out,
        "\n### bytes per stored event: {count} events ({deposits} deposits over {BYTES_ACCOUNTS} \
         accounts, by commands) in fresh databases\n"
    )
    .unwrap();
    writeln!(
        out,
        "| bytes per event | composable | cqrs-es, empty metadata | cqrs-es, Composable's \
         metadata | ratio to empty | ratio to same metadata |"
    )
    .unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|---:|").unwrap();
    for (name, [ours, bare, meta]) in Bytes::rows([&ours, &bare, &with_metadata]) {
        writeln!(
            out,
            "| {name} | {ours:.0} | {bare:.0} | {meta:.0} | {:.2} | {:.2} |",
            ours / bare,
            ours / meta
        )
        .unwrap();
    }
    println!("{out}");
    for database in [BYTES_COMPOSABLE_DB, BYTES_CQRS_DB, BYTES_CQRS_METADATA_DB] {
        server.drop_database(admin, database).await;
    }
}

async fn run(server: Arc<Server>, modes: Vec<Mode>, sizes: Sizes) {
    let mut admin = server.connect("postgres").await;
    for (index, &mode) in modes.iter().enumerate() {
        run_mode(&server, &mut admin, mode, sizes).await;
        if index + 1 == modes.len() {
            // Bytes do not depend on the settings: measured once, under the last mode's.
            bytes_workload(&server, &mut admin, mode, sizes.bytes).await;
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let sizes = Sizes {
        rounds: env_usize("BENCH_ROUNDS", 3).max(1),
        sequential: env_usize("BENCH_SEQUENTIAL", 2000).max(1),
        concurrent: env_usize("BENCH_CONCURRENT", 8000).max(CLIENTS),
        stream: env_usize("BENCH_STREAM", 5000).max(2),
        loads: env_usize("BENCH_LOADS", 200).max(1),
        bytes: env_usize("BENCH_BYTES", 10_000).max(BYTES_ACCOUNTS),
    };
    let modes = match std::env::var("BENCH_SETTINGS").as_deref() {
        Err(_) | Ok("both") => vec![Mode::Test, Mode::Durable],
        Ok("test") => vec![Mode::Test],
        Ok("durable") => vec![Mode::Durable],
        Ok(other) => panic!("BENCH_SETTINGS: test, durable or both; got `{other}`"),
    };
    let url = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: start PostgreSQL with `source scripts/lib/postgres.sh && pg_start`",
    );
    let options: PgConnectOptions = url.parse().expect("DATABASE_URL is a valid URL");
    let server = Arc::new(Server { options, url });
    let mut admin = server.connect("postgres").await;
    let originals = read_originals(&mut admin).await;
    admin.close().await.unwrap();

    println!(
        "## Composable against cqrs-es 0.5 + postgres-es 0.5\n\n(median of {} rounds; ratio = \
         composable / cqrs-es: above 1 Composable is faster, for bytes below 1 it is smaller)",
        sizes.rounds
    );
    // A failed workload still gives the server its settings back before the panic goes on.
    let outcome = tokio::spawn(run(server.clone(), modes, sizes)).await;
    restore(&server, &originals).await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}
