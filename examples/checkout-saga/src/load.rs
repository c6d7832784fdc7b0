//! A load generator for the hosted checkout: orders at a constant arrival rate, open loop,
//! against `checkout-service` running as several processes on PostgreSQL and Kafka, and an
//! audit of everything they did at the end.
//!
//! Order `i` is due at `start + i / rate` and is placed on a task of its own when it is due,
//! whether or not the orders before it have finished, so a slow system shows as latency rather
//! than as a lower offered rate. A checkout's latency runs from its due time (not from when the
//! placement began: no coordinated omission) to its terminal event (`order.confirmed` or
//! `order.cancelled`) committing, as a consumer of the log sees it — one [`LogConsumer`]
//! following the log from its head at the start, woken by `LISTEN/NOTIFY`. Plain
//! single-aggregate commands (a restock of one unit) run beside the checkouts at a share of all
//! commands ([`Options::plain_share`]), on their own schedule. Every tenth order's card is
//! declined (its checkout compensates), and every seventh SKU is stocked short, so that some
//! reservations fail and their payments are refunded.
//!
//! With [`Options::spawn`] the generator creates a database and a topic prefix of its own and
//! starts the processes itself ([`Cluster`]): the command service twice, the saga twice, the
//! relay and the board's projection, each a `checkout-service --role …` serving its metrics,
//! and exporting its traces to a small OTLP sink of the generator's own unless
//! [`Options::no_traces`]. With [`Options::kill`] it kills one process of each role with SIGKILL
//! during the run, one at a time, spaced evenly, and starts it again: at once, or for a command
//! service once the broker has expelled the dead one from its consumer group. Without
//! `--spawn` it drives processes already running on [`Options::database_url`] (their topic
//! prefix is [`Options::prefix`], their metrics addresses [`Options::metrics`]).
//!
//! During the run it samples, every [`LAG_SAMPLE`], how far the log consumers' checkpoints
//! (the relay's, the saga input's, the board's) are behind the head of the log — in events, and
//! in seconds since the oldest event not yet handled was recorded — and the lag gauges the
//! processes serve at `/metrics` (the same consumers, and the command service's consumer of the
//! broker, each as of the last batch it handled). The run fails when a checkpoint falls more
//! than [`Options::max_lag_secs`] behind. Before the
//! load it measures the raw PostgreSQL ceiling: single-row `INSERT`s into a plain table shaped
//! like the events table, by as many clients as [`Options::raw_clients`], for
//! [`Options::raw_secs`].
//!
//! It also reads, from `/proc` (Linux), the CPU time each process of the run used while the
//! orders were placed and drained: each role's `checkout-service` processes, itself, the
//! PostgreSQL server's processes and the broker's ([`Report::cpu`]).
//!
//! At the end — in spawned clusters after stopping the saga and the command service, so that the
//! log holds still — the audit ([`Report::failures`]): every order placed has its `order.placed`
//! event and exactly one terminal event; a declined card was never charged; a confirmed order
//! was captured once for its total, never refunded, and holds one reservation; a cancelled
//! order's money and stock were given back; no payment was captured twice, no order reserved
//! twice; the money captured and not refunded for finished checkouts is the total of the
//! confirmed orders; each SKU's stock is what was restocked less what the confirmed orders (and
//! the checkouts still running that reserved) hold, and holds exactly their reservations; no
//! event id was written twice; the board agrees with the aggregates.
//! The run also fails when the generator could not hold the offered rate (it started an order
//! later than [`Options::max_lateness_ms`] after its due time) or a checkout had not finished
//! within [`Options::drain_secs`] after the last order.
//!
//! `src/bin/checkout-load.rs` is the command line; `tests/load_smoke.rs` runs a few seconds
//! of it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use composable::backoff::Backoff;
use composable::checkpoint::InMemoryCheckpointStore;
use composable::consistency::ReadToken;
use composable::consumer::{EventHandler, LogConsumer, LogReader};
use composable::service::{self, ServiceHandle};
use composable::{AggregateRunner, Bincode, BoxError, EventStore, RecordedEvent, SystemClock};
use composable_postgres::{PgConnectOptions, PostgresEventStore, PostgresReadStore};
use hdrhistogram::Histogram;
use sqlx::{Connection, Executor, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::board::{self, OrderLine, StockLevel};
use crate::{
    Aggregates, DECLINED_CARD, InventoryEvent, OrderEvent, PaymentEvent, PlaceOrder, Restock,
    hosted,
};

/// How often the lag gauges are sampled.
pub const LAG_SAMPLE: Duration = Duration::from_millis(500);

/// Orders per SKU: each inventory stream stays short (runners load whole streams).
const ORDERS_PER_SKU: u64 = 20;

/// The stock of a SKU before the run; every seventh SKU gets half its orders' worth instead.
const STOCK: u32 = 1_000;

/// The warm-up checkouts, before the measured run: the consumer groups join, partitions get
/// assigned, connections open.
const WARM_UP: u64 = 6;

/// The roles of the hosted checkout a spawned cluster runs, and how many processes each.
pub const ROLES: [(&str, usize); 4] =
    [("commands", 2), ("checkout", 2), ("relay", 1), ("board", 1)];

/// How long a killed process's claim on the relay's, the saga's or the board's work holds up the
/// next one, in spawned processes.
pub const CLAIM_TTL_MS: u64 = 2_000;

/// What to run: the command line of `checkout-load`.
#[derive(Debug, Clone, Parser)]
#[command(name = "checkout-load", about = "Open-loop load on the hosted checkout, with an audit")]
#[allow(clippy::struct_excessive_bools)]
pub struct Options {
    /// Checkouts placed per second (each is four commands when it succeeds).
    #[arg(long, default_value_t = 25.0)]
    pub rate: f64,
    /// How long orders are placed, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// The share of all commands that are plain single-aggregate commands (a restock of one
    /// unit), from 0 to below 1: 0.2 is one restock per checkout.
    #[arg(long, default_value_t = 0.2)]
    pub plain_share: f64,
    /// Start the processes (command service ×2, saga ×2, relay, board) on a database and topic
    /// prefix of their own, and stop them and drop the database at the end.
    #[arg(long)]
    pub spawn: bool,
    /// Kill one process of each role with SIGKILL during the run, one at a time, and start it
    /// again: at once, a command service once the broker has expelled the dead one from its
    /// consumer group, 10 s later (needs --spawn).
    #[arg(long)]
    pub kill: bool,
    /// Don't export the spawned processes' traces (by default they go to an OTLP sink of the
    /// generator's own, so that tracing costs what it costs).
    #[arg(long)]
    pub no_traces: bool,
    /// The `checkout-service` binary (default: beside this one).
    #[arg(long)]
    pub service_bin: Option<PathBuf>,
    /// The PostgreSQL server (with --spawn: a database is created on it) or database (without);
    /// `DATABASE_URL` by default.
    #[arg(long)]
    pub database_url: Option<String>,
    /// The Kafka brokers; `KAFKA_BROKERS` by default.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Without --spawn: the running processes' topic prefix (`CHECKOUT_TOPIC_PREFIX`).
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Without --spawn: the addresses the running processes serve their metrics on, for the
    /// lag (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<SocketAddr>,
    /// How long to wait, after the last order, for the checkouts still running, in seconds.
    #[arg(long, default_value_t = 120.0)]
    pub drain_secs: f64,
    /// The most an order may start after its due time before the offered rate counts as not
    /// held, in milliseconds.
    #[arg(long, default_value_t = 100.0)]
    pub max_lateness_ms: f64,
    /// The most any log consumer's checkpoint (relay, saga, board) may fall behind the head,
    /// in seconds, before its lag counts as unbounded.
    #[arg(long, default_value_t = 10.0)]
    pub max_lag_secs: f64,
    /// Clients of the raw single-row INSERT ceiling measured before the load (0: not measured).
    #[arg(long, default_value_t = 16)]
    pub raw_clients: usize,
    /// How long the raw ceiling is measured, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub raw_secs: f64,
    /// With --spawn: keep the database (and the processes' logs) after the run.
    #[arg(long)]
    pub keep: bool,
}

impl Options {
    /// Options from `args` (the program's name first), as the command line parses them.
    ///
    /// # Errors
    /// An argument the command line refuses.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::try_parse_from(args)
    }

    fn check(&self) -> Result<(), BoxError> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(format!("--rate must be above 0, not {}", self.rate).into());
        }
        if !(self.duration.is_finite() && self.duration > 0.0 && self.duration <= 3_600.0) {
            return Err("--duration must be above 0 and at most 3600 seconds".into());
        }
        if !(0.0..0.95).contains(&self.plain_share) {
            return Err("--plain-share must be at least 0 and below 0.95".into());
        }
        if self.kill && !self.spawn {
            return Err("--kill needs --spawn: it kills the processes the generator started".into());
        }
        if !(self.drain_secs.is_finite() && self.drain_secs >= 0.0 && self.raw_secs >= 0.0) {
            return Err("--drain-secs and --raw-secs must be at least 0".into());
        }
        Ok(())
    }
}

/// Locks `mutex`, whatever a panicking holder left in it (the tallies stay countable).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn env(name: &str) -> Result<String, BoxError> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .ok_or_else(|| format!("{name} is not set (or pass it as an option)").into())
}

// ---------------------------------------------------------------------------------------------
// The processes

/// A database of one run and a topic prefix, with the `checkout-service` processes on it.
#[derive(Debug)]
pub struct Cluster {
    binary: PathBuf,
    database_url: String,
    brokers: String,
    prefix: String,
    logs: PathBuf,
    otlp: Option<SocketAddr>,
    processes: Vec<Process>,
    started: usize,
}

/// One `checkout-service` process of a [`Cluster`].
#[derive(Debug)]
pub struct Process {
    /// Its role (`--role`).
    pub role: &'static str,
    /// Where it serves its metrics.
    pub metrics: SocketAddr,
    child: Child,
}

/// A loopback address with a port free now.
fn free_address() -> Result<SocketAddr, BoxError> {
    let listener = StdListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

impl Cluster {
    /// A cluster on `database_url` (the database exists and is migrated) and the brokers,
    /// under `prefix`, its processes' logs in `logs`, their traces to `otlp` when given.
    pub fn new(
        binary: PathBuf,
        database_url: String,
        brokers: String,
        prefix: String,
        logs: PathBuf,
        otlp: Option<SocketAddr>,
    ) -> Self {
        Self {
            binary,
            database_url,
            brokers,
            prefix,
            logs,
            otlp,
            processes: Vec::new(),
            started: 0,
        }
    }

    /// Starts a process of `role`.
    ///
    /// # Errors
    /// When it cannot be started, or its log file created.
    pub fn start(&mut self, role: &'static str) -> Result<(), BoxError> {
        let metrics = free_address()?;
        self.started += 1;
        let log = self.logs.join(format!("{}-{role}.log", self.started));
        let stderr = std::fs::File::create(&log)
            .map_err(|error| format!("cannot create {}: {error}", log.display()))?;
        let mut command = Command::new(&self.binary);
        command
            .args(["--role", role])
            .env("DATABASE_URL", &self.database_url)
            .env("KAFKA_BROKERS", &self.brokers)
            .env("CHECKOUT_TOPIC_PREFIX", &self.prefix)
            .env("CHECKOUT_CLAIM_TTL_MS", CLAIM_TTL_MS.to_string())
            .env("CHECKOUT_METRICS_ADDR", metrics.to_string())
            .env("OTEL_SERVICE_NAME", format!("checkout-{role}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        match self.otlp {
            Some(sink) => command.env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{sink}")),
            None => command.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT"),
        };
        let child = command.spawn().map_err(|error| {
            format!("cannot start {} --role {role}: {error}", self.binary.display())
        })?;
        self.processes.push(Process { role, metrics, child });
        Ok(())
    }

    /// The processes running.
    pub fn processes(&self) -> &[Process] {
        &self.processes
    }

    /// The process ids of the processes running, with their roles.
    fn pids(&self) -> Vec<(u32, String)> {
        self.processes
            .iter()
            .map(|process| {
                (process.child.id(), format!("checkout-service --role {}", process.role))
            })
            .collect()
    }

    /// Kills the first process of `role` with SIGKILL: false when none runs.
    ///
    /// # Errors
    /// When it cannot be killed or waited for.
    pub fn kill(&mut self, role: &'static str) -> Result<bool, BoxError> {
        let Some(index) = self.processes.iter().position(|process| process.role == role) else {
            return Ok(false);
        };
        let mut process = self.processes.remove(index);
        // `Child::kill` is SIGKILL on Unix: the process gets no chance to finish anything.
        process.child.kill()?;
        process.child.wait()?;
        Ok(true)
    }

    /// Processes that exited by themselves: their roles and exit statuses.
    pub fn exited(&mut self) -> Vec<String> {
        let mut exited = Vec::new();
        for process in &mut self.processes {
            if let Ok(Some(status)) = process.child.try_wait() {
                exited.push(format!("--role {} exited with {status}", process.role));
            }
        }
        exited
    }

    /// Stops every process with SIGTERM, waiting up to 30 s each; SIGKILL for those that don't
    /// stop. The roles of those that did not stop cleanly.
    pub fn stop(&mut self) -> Vec<String> {
        let everything: Vec<Process> = self.processes.drain(..).collect();
        Self::terminate(everything)
    }

    /// Stops the processes of `roles` as [`stop`](Self::stop) does, one role after the other.
    pub fn stop_roles(&mut self, roles: &[&str]) -> Vec<String> {
        let mut unclean = Vec::new();
        for role in roles {
            let (stopping, staying) =
                self.processes.drain(..).partition(|process| process.role == *role);
            self.processes = staying;
            unclean.extend(Self::terminate(stopping));
        }
        unclean
    }

    fn terminate(mut processes: Vec<Process>) -> Vec<String> {
        let mut unclean = Vec::new();
        for process in &processes {
            let _ = Command::new("kill")
                .args(["-TERM", &process.child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for mut process in processes.drain(..) {
            loop {
                match process.child.try_wait() {
                    Ok(Some(status)) if status.success() => break,
                    Ok(Some(status)) => {
                        unclean.push(format!("--role {} exited with {status}", process.role));
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Ok(None) | Err(_) => {
                        unclean.push(format!("--role {} did not stop on SIGTERM", process.role));
                        let _ = process.child.kill();
                        let _ = process.child.wait();
                        break;
                    }
                }
            }
        }
        unclean
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for process in &mut self.processes {
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
    }
}

/// A database created for one run, and the connection that drops it.
struct Database {
    name: String,
    url: String,
    admin: PgConnection,
}

impl Database {
    async fn create(server_url: &str, run: &str) -> Result<Self, BoxError> {
        let options: PgConnectOptions = server_url
            .parse()
            .map_err(|error| format!("DATABASE_URL is not a PostgreSQL URL: {error}"))?;
        let mut admin = PgConnection::connect_with(&options)
            .await
            .map_err(|error| format!("cannot reach PostgreSQL at DATABASE_URL: {error}"))?;
        let name = format!("checkout_load_{run}");
        admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await?;
        let (server, _) =
            server_url.split_once('?').map_or((server_url, ""), |(url, query)| (url, query));
        let (base, _) = server
            .rsplit_once('/')
            .ok_or("DATABASE_URL has no database part (postgres://…/name)")?;
        Ok(Self { url: format!("{base}/{name}"), name, admin })
    }

    async fn drop_database(mut self) {
        let _ = self
            .admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Following the log

/// What the log says about one order of the run.
#[derive(Debug, Clone, Default)]
struct OrderFacts {
    placed: u32,
    sku: String,
    quantity: u32,
    total: u64,
    declined: bool,
    confirmed: u32,
    cancelled: u32,
    captures: u32,
    captured: u64,
    refunds: u32,
    refunded: u64,
    reservations: u32,
    releases: u32,
}

/// Everything the follower has seen, and the orders it is waiting for.
#[derive(Debug)]
struct Tally {
    /// Ids of this run's orders and SKUs start with it.
    run: String,
    /// The due time of each measured order still running.
    due: HashMap<String, Instant>,
    /// Latency of measured checkouts, in microseconds.
    latency: Histogram<u64>,
    orders: HashMap<String, OrderFacts>,
    /// Units restocked, by SKU.
    restocked: BTreeMap<String, u64>,
    event_ids: HashSet<uuid::Uuid>,
    duplicate_ids: u64,
    undecodable: Vec<String>,
    /// When the last measured checkout finished.
    last_finished: Option<Instant>,
}

/// A histogram of microseconds from 1 µs to an hour, three significant digits.
fn histogram() -> Result<Histogram<u64>, BoxError> {
    Ok(Histogram::new_with_bounds(1, 3_600_000_000, 3)?)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Tally {
    fn order(&mut self, id: &str) -> &mut OrderFacts {
        self.orders.entry(id.to_owned()).or_default()
    }

    fn see(&mut self, event: &RecordedEvent, now: Instant) {
        let id = event.stream_id.id();
        if !id.starts_with(&self.run) {
            return;
        }
        if !self.event_ids.insert(event.event_id) {
            self.duplicate_ids += 1;
        }
        let result = match event.stream_id.category() {
            "order" => event.decode::<OrderEvent, _>(&Bincode).map(|decoded| {
                let terminal = match decoded {
                    OrderEvent::OrderPlaced(placed) => {
                        let facts = self.order(id);
                        facts.placed += 1;
                        facts.sku = placed.sku;
                        facts.quantity = placed.quantity;
                        facts.total = placed.total;
                        facts.declined = placed.card == DECLINED_CARD;
                        false
                    }
                    OrderEvent::OrderConfirmed(_) => {
                        self.order(id).confirmed += 1;
                        true
                    }
                    OrderEvent::OrderCancelled(_) => {
                        self.order(id).cancelled += 1;
                        true
                    }
                };
                if terminal && let Some(due) = self.due.remove(id) {
                    self.latency.saturating_record(micros(now.saturating_duration_since(due)));
                    self.last_finished = Some(now);
                }
            }),
            "payment" => event.decode::<PaymentEvent, _>(&Bincode).map(|decoded| {
                let facts = self.order(id);
                match decoded {
                    PaymentEvent::PaymentCaptured(captured) => {
                        facts.captures += 1;
                        facts.captured += captured.amount;
                    }
                    PaymentEvent::PaymentRefunded(refunded) => {
                        facts.refunds += 1;
                        facts.refunded += refunded.amount;
                    }
                }
            }),
            "inventory" => {
                event.decode::<InventoryEvent, _>(&Bincode).map(|decoded| match decoded {
                    InventoryEvent::Restocked(restocked) => {
                        *self.restocked.entry(id.to_owned()).or_default() +=
                            u64::from(restocked.quantity);
                    }
                    InventoryEvent::StockReserved(reserved) => {
                        self.order(&reserved.order_id).reservations += 1;
                    }
                    InventoryEvent::ReservationRequested(requested) => {
                        self.order(&requested.order_id).reservations += 1;
                    }
                    InventoryEvent::StockReleased(released) => {
                        self.order(&released.order_id).releases += 1;
                    }
                })
            }
            _ => Ok(()),
        };
        if let Err(error) = result
            && self.undecodable.len() < 10
        {
            self.undecodable.push(format!("{} in {}: {error}", event.name, event.stream_id));
        }
    }
}

/// The follower's handler: every event of the run into the tally.
struct Follower(Arc<Mutex<Tally>>);

impl EventHandler for Follower {
    type Error = std::convert::Infallible;

    async fn handle(&mut self, events: &[RecordedEvent]) -> Result<(), Self::Error> {
        let now = Instant::now();
        let mut tally = lock(&self.0);
        for event in events {
            tally.see(event, now);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Lag

/// The lag gauges of every process, sampled.
#[derive(Debug, Default)]
struct Lags {
    /// Per series (`metric{labels}`): the largest value over the processes, each sample.
    samples: BTreeMap<String, Vec<f64>>,
    scrape_failures: u64,
}

/// The gauges of one `/metrics` text whose names end in `_lag_seconds`.
fn lag_gauges(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            if !name.ends_with("_lag_seconds") {
                return None;
            }
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// `GET /metrics` from `address`, within a second.
async fn scrape(address: SocketAddr) -> Result<String, BoxError> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        Ok::<_, std::io::Error>(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(1), fetch).await??;
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!("{address} answered {}", text.lines().next().unwrap_or("")).into());
    }
    Ok(text)
}

/// How far each checkpoint of the log's consumers (the relay's, the saga input's in
/// `checkpoints`; the board's in `projection_checkpoints`) is behind the head: in events, and
/// in seconds since the oldest event it has not handled was recorded (0 when it has handled
/// all). Unlike the processes' gauges, which a consumer sets when it handles a batch, this
/// does not go stale when a consumer stops.
const CHECKPOINT_LAG: &str = "
    WITH consumers AS (
        SELECT name, transaction_id, position FROM checkpoints
        UNION ALL
        SELECT name, transaction_id, position FROM projection_checkpoints
    )
    SELECT c.name,
           (SELECT count(*) FROM events e
             WHERE (e.transaction_id, e.position) > (c.transaction_id::text::xid8, c.position)),
           coalesce(extract(epoch FROM now() - (
               SELECT e.recorded_at FROM events e
                WHERE (e.transaction_id, e.position) > (c.transaction_id::text::xid8, c.position)
                ORDER BY e.transaction_id, e.position LIMIT 1))::float8, 0)
    FROM consumers c";

/// How long after killing a process of `role` the generator starts another.
///
/// A command service is a member of the broker's consumer group `{app}.commands`. Kafka and
/// Redpanda expel a member that stopped heartbeating once its session times out
/// ([`hosted::SESSION_TIMEOUT`]) and
/// hand its partitions to the others. tansu 0.6, the broker of the test scripts, does not start
/// a new generation when it expels a member: a member that joins before the expulsion makes the
/// group's leader assign partitions to the dead member too, and nobody consumes them until the
/// next rebalance (fixed in tansu's successor, which needs a newer Rust than this workspace).
/// So a new command service starts once the dead one's session has run out and a heartbeat of a
/// surviving member has expelled it: the session, a heartbeat interval (librdkafka's 3 s) and a
/// second. The other roles take over through claims in the database and start again at once.
fn restart_after(role: &str) -> Duration {
    const HEARTBEAT: Duration = Duration::from_secs(3);
    if role == "commands" {
        hosted::SESSION_TIMEOUT + HEARTBEAT + Duration::from_secs(1)
    } else {
        Duration::ZERO
    }
}

/// Samples the lag gauges of the processes at `addresses()` and the checkpoints' lag in
/// `store`'s database every [`LAG_SAMPLE`] until `until`.
async fn sample_lags(
    addresses: impl Fn() -> Vec<SocketAddr>,
    store: PostgresEventStore,
    lags: Arc<Mutex<Lags>>,
    until: Instant,
) {
    let mut tick = tokio::time::interval(LAG_SAMPLE);
    while Instant::now() < until {
        tick.tick().await;
        let mut largest: BTreeMap<String, f64> = BTreeMap::new();
        let mut failures = 0;
        let checkpoints: Result<Vec<(String, i64, f64)>, _> =
            sqlx::query_as(CHECKPOINT_LAG).fetch_all(store.pool()).await;
        match checkpoints {
            Ok(rows) => {
                for (name, events, seconds) in rows {
                    #[allow(clippy::cast_precision_loss)]
                    largest.insert(format!("checkpoint {name}: events behind"), events as f64);
                    largest.insert(format!("checkpoint {name}: seconds behind"), seconds);
                }
            }
            Err(_) => failures += 1,
        }
        for address in addresses() {
            match scrape(address).await {
                Ok(text) => {
                    for (series, value) in lag_gauges(&text) {
                        let entry = largest.entry(series).or_insert(value);
                        *entry = entry.max(value);
                    }
                }
                Err(_) => failures += 1,
            }
        }
        let mut lags = lock(&lags);
        lags.scrape_failures += failures;
        for (series, value) in largest {
            lags.samples.entry(series).or_default().push(value);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CPU

/// The servers the run uses, as processes of this machine (found through `/proc`, Linux only):
/// the PostgreSQL server's processes and the broker's.
#[derive(Debug, Clone, Default)]
struct Servers {
    /// The PostgreSQL server's postmaster.
    postmaster: Option<u32>,
    /// The broker's port on loopback, as its command line names it.
    broker_port: Option<String>,
}

impl Servers {
    async fn find(store: &PostgresEventStore, brokers: &str) -> Self {
        let backend: Option<(i32,)> = sqlx::query_as("SELECT pg_backend_pid()")
            .fetch_optional(store.pool())
            .await
            .ok()
            .flatten();
        let postmaster = backend
            .and_then(|(pid,)| u32::try_from(pid).ok())
            .and_then(|pid| stat_field(pid, 1))
            .and_then(|ppid| ppid.parse().ok());
        let broker_port = brokers
            .split(',')
            .next()
            .and_then(|broker| broker.rsplit_once(':'))
            .map(|(_, port)| format!(":{port}"));
        Self { postmaster, broker_port }
    }

    /// This process, the PostgreSQL server's processes and the broker's, labelled.
    fn pids(&self) -> Vec<(u32, String)> {
        let mut pids = vec![(std::process::id(), "checkout-load (this generator)".to_owned())];
        let Ok(entries) = std::fs::read_dir("/proc") else { return pids };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(postmaster) = self.postmaster
                && (pid == postmaster
                    || stat_field(pid, 1).and_then(|ppid| ppid.parse().ok()) == Some(postmaster))
            {
                pids.push((pid, "postgres".to_owned()));
                continue;
            }
            if let Some(port) = &self.broker_port {
                let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let command = String::from_utf8_lossy(&command);
                if command.contains("tansu") && command.contains(port.as_str()) {
                    pids.push((pid, "broker (tansu)".to_owned()));
                }
            }
        }
        pids
    }
}

/// Field `index` of `/proc/{pid}/stat` counted from the one after the command's name (0 is
/// the state, 1 the parent, 11 user time, 12 system time).
fn stat_field(pid: u32, index: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(index).map(str::to_owned)
}

/// CPU seconds (user and system) process `pid` has used, in the kernel's 100 ticks a second.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let user: f64 = stat_field(pid, 11)?.parse().ok()?;
    let system: f64 = stat_field(pid, 12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// The CPU seconds of each of `pids` now, and when.
fn cpu_snapshot(pids: &[(u32, String)]) -> (Instant, HashMap<u32, f64>) {
    let seconds = pids.iter().filter_map(|(pid, _)| Some((*pid, cpu_seconds(*pid)?))).collect();
    (Instant::now(), seconds)
}

/// CPU seconds each label's processes among `pids` used since `before` (a process started
/// since counts from 0), most first, and the time since.
fn cpu_use(
    before: &(Instant, HashMap<u32, f64>),
    pids: &[(u32, String)],
) -> (Vec<(String, f64)>, Duration) {
    let mut by_label: BTreeMap<String, f64> = BTreeMap::new();
    for (pid, label) in pids {
        if let Some(now) = cpu_seconds(*pid) {
            let then = before.1.get(pid).copied().unwrap_or(0.0);
            *by_label.entry(label.clone()).or_default() += (now - then).max(0.0);
        }
    }
    let mut used: Vec<(String, f64)> = by_label.into_iter().collect();
    used.sort_by(|a, b| b.1.total_cmp(&a.1));
    (used, before.0.elapsed())
}

// ---------------------------------------------------------------------------------------------
// The OTLP sink

/// Spans the sink received (counted as `"spanId"` keys of the OTLP JSON) and requests.
#[derive(Debug, Default)]
struct Sink {
    requests: AtomicU64,
    spans: AtomicU64,
}

/// An OTLP/HTTP receiver that accepts everything and keeps only counts: where the spawned
/// processes export their traces.
async fn otlp_sink() -> Result<(SocketAddr, Arc<Sink>, tokio::task::JoinHandle<()>), BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let sink = Arc::new(Sink::default());
    let counts = Arc::clone(&sink);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                let _ = serve_otlp(stream, &counts).await;
            });
        }
    });
    Ok((address, sink, task))
}

/// Answers the requests of one connection with `200 {}` (keep-alive), counting their spans.
async fn serve_otlp(mut stream: tokio::net::TcpStream, sink: &Sink) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") else {
            let read = stream.read(&mut chunk).await?;
            if read == 0 || buffer.len() > 1 << 16 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..read]);
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        while buffer.len() < end + 4 + length {
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
        let body = &buffer[end + 4..end + 4 + length];
        let spans = body.windows(8).filter(|window| window == b"\"spanId\"").count();
        sink.requests.fetch_add(1, Ordering::Relaxed);
        sink.spans.fetch_add(spans as u64, Ordering::Relaxed);
        buffer.drain(..end + 4 + length);
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            )
            .await?;
    }
}

// ---------------------------------------------------------------------------------------------
// The raw ceiling

/// Single-row `INSERT`s per second into a plain table shaped like the events table, by
/// `clients` clients for `duration`, on `store`'s database: what PostgreSQL itself does.
async fn raw_ceiling(
    store: &PostgresEventStore,
    run: &str,
    clients: usize,
    duration: Duration,
) -> Result<f64, BoxError> {
    let pool = store.pool();
    // A table of this run's own (`run` is letters and digits), dropped at the end.
    let table = format!("load_raw_{run}");
    pool.execute(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (
            position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            stream_id       text NOT NULL,
            stream_version  bigint NOT NULL,
            event_id        uuid NOT NULL UNIQUE,
            event_name      text NOT NULL,
            event_version   integer NOT NULL,
            payload_format  text NOT NULL,
            payload         bytea NOT NULL,
            correlation_id  uuid NOT NULL,
            causation_id    uuid,
            occurred_at_ns  bigint NOT NULL,
            traceparent     text,
            recorded_at     timestamptz NOT NULL DEFAULT now(),
            transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
            UNIQUE (stream_id, stream_version)
        )"
    )))
    .await?;
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        let pool = pool.clone();
        let insert = format!(
            "INSERT INTO {table} (stream_id, stream_version, event_id, event_name, \
             event_version, payload_format, payload, correlation_id, causation_id, \
             occurred_at_ns) \
             VALUES ($1, $2, $3, 'load.raw', 1, 'bincode2', $4, $5, $5, $6)"
        );
        tasks.spawn(async move {
            let stream = format!("raw-{client}");
            let mut version: i64 = 0;
            while start.elapsed() < duration {
                version += 1;
                sqlx::query(sqlx::AssertSqlSafe(insert.as_str()))
                    .bind(&stream)
                    .bind(version)
                    .bind(uuid::Uuid::now_v7())
                    .bind(vec![7u8; 60])
                    .bind(uuid::Uuid::now_v7())
                    .bind(0_i64)
                    .execute(&pool)
                    .await?;
            }
            Ok::<i64, sqlx::Error>(version)
        });
    }
    let mut rows = 0;
    while let Some(done) = tasks.join_next().await {
        rows += done??;
    }
    let elapsed = start.elapsed();
    pool.execute(sqlx::AssertSqlSafe(format!("DROP TABLE {table}"))).await?;
    #[allow(clippy::cast_precision_loss)]
    Ok(rows as f64 / elapsed.as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// The report

/// Percentiles of a histogram of microseconds, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// How many were recorded.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// The largest.
    pub max: f64,
}

impl Latency {
    #[allow(clippy::cast_precision_loss)]
    fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1_000.0;
        Self {
            count: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.5)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms ({} recorded)",
            self.p50, self.p99, self.p999, self.max, self.count
        )
    }
}

/// One lag series: its largest value and 99th percentile over the samples, in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct LagSeries {
    /// `metric{labels}`, as the processes serve it.
    pub series: String,
    /// Samples taken.
    pub samples: usize,
    /// The largest.
    pub max: f64,
    /// The 99th percentile.
    pub p99: f64,
}

/// What a run measured, and what its audit found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The rate asked for, checkouts per second.
    pub target_rate: f64,
    /// How long orders were placed.
    pub duration: Duration,
    /// Measured orders placed (their placement started).
    pub orders: u64,
    /// Plain commands issued.
    pub plain: u64,
    /// Orders and plain commands whose command failed (the generator's own; the processes'
    /// retries are theirs).
    pub command_errors: Vec<String>,
    /// Orders per second as the generator started them (first due to last start).
    pub offered_rate: f64,
    /// How late the generator started an order after its due time, at most.
    pub max_lateness: Duration,
    /// Measured checkouts finished (confirmed or cancelled).
    pub finished: u64,
    /// Of those, confirmed.
    pub confirmed: u64,
    /// Finished checkouts per second, from the start to the last one finishing.
    pub achieved_rate: f64,
    /// Commands per second over the same time: the placement and the saga's commands (charge,
    /// reserve, confirm or cancel, refund, release, as its events show) of each finished
    /// checkout, and the plain commands.
    pub commands_per_second: f64,
    /// From an order's due time to its terminal event committing; a checkout still running
    /// at the end of the drain counts with its age then (a lower bound).
    pub latency: Latency,
    /// From a plain command's due time to its command returning.
    pub plain_latency: Latency,
    /// The lag gauges.
    pub lags: Vec<LagSeries>,
    /// Scrapes of `/metrics` that failed (a killed process's, among others).
    pub scrape_failures: u64,
    /// Raw single-row INSERTs per second before the load, and by how many clients.
    pub raw_ceiling: Option<(f64, usize)>,
    /// What was killed and restarted, when.
    pub kills: Vec<String>,
    /// CPU seconds each kind of process used from the first order to the end of the drain
    /// (Linux only; a killed process's CPU is lost), and that time.
    pub cpu: Option<(Vec<(String, f64)>, Duration)>,
    /// Spans the OTLP sink received, when it ran.
    pub spans: Option<u64>,
    /// Everything the audit and the rate check found wrong; empty when the run passed.
    pub failures: Vec<String>,
    /// Where the spawned processes' logs are.
    pub logs: Option<PathBuf>,
}

impl Report {
    /// Whether the offered rate was held and the audit found nothing wrong.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.duration.as_secs_f64();
        writeln!(f, "checkout load: {:.1} checkouts/s for {seconds:.0} s", self.target_rate)?;
        writeln!(
            f,
            "  offered: {:.1} orders/s ({} orders, {} plain commands), started at most {:.1} ms late",
            self.offered_rate,
            self.orders,
            self.plain,
            self.max_lateness.as_secs_f64() * 1e3
        )?;
        writeln!(
            f,
            "  achieved: {:.1} checkouts/s ({} finished, {} confirmed), {:.0} commands/s",
            self.achieved_rate, self.finished, self.confirmed, self.commands_per_second
        )?;
        writeln!(f, "  checkout latency (due → terminal event): {}", self.latency)?;
        writeln!(f, "  plain command latency (due → done): {}", self.plain_latency)?;
        if let Some((raw, clients)) = self.raw_ceiling {
            writeln!(
                f,
                "  raw PostgreSQL ceiling: {raw:.0} single-row INSERTs/s ({clients} clients); \
                 commands/s ÷ ceiling = {:.3}",
                self.commands_per_second / raw
            )?;
        }
        writeln!(f, "  lag (max / p99 over samples every {} ms):", LAG_SAMPLE.as_millis())?;
        for lag in &self.lags {
            writeln!(
                f,
                "    {}: {:.3} / {:.3} ({} samples)",
                lag.series, lag.max, lag.p99, lag.samples
            )?;
        }
        if self.scrape_failures > 0 {
            writeln!(f, "    ({} scrapes failed)", self.scrape_failures)?;
        }
        for kill in &self.kills {
            writeln!(f, "  {kill}")?;
        }
        if let Some((cpu, over)) = &self.cpu {
            let wall = over.as_secs_f64();
            writeln!(f, "  CPU over {wall:.0} s (cores busy, of 1):")?;
            for (name, seconds) in cpu {
                writeln!(f, "    {name}: {seconds:.1} s ({:.2})", seconds / wall.max(1e-3))?;
            }
        }
        if let Some(spans) = self.spans {
            writeln!(f, "  traces: {spans} spans exported to the sink")?;
        }
        if let Some(logs) = &self.logs {
            writeln!(f, "  process logs: {}", logs.display())?;
        }
        if self.command_errors.is_empty() && self.failures.is_empty() {
            return writeln!(f, "  audit: passed");
        }
        for error in &self.command_errors {
            writeln!(f, "  command error: {error}")?;
        }
        writeln!(f, "  FAILED:")?;
        for failure in &self.failures {
            writeln!(f, "    {failure}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The run

/// The order `number` of run `run`: its id and command. Every tenth card is declined.
fn order(run: &str, number: u64, warm_up: bool) -> (String, PlaceOrder) {
    let id = if warm_up { format!("{run}-w{number}") } else { format!("{run}-{number}") };
    let card = if number % 10 == 9 { DECLINED_CARD } else { "tok_visa" };
    let place = PlaceOrder {
        order_id: id.clone(),
        sku: sku(run, number),
        quantity: 1,
        total: 500 + number % 1_000,
        card: card.into(),
    };
    (id, place)
}

fn sku(run: &str, number: u64) -> String {
    format!("{run}-sku{}", number / ORDERS_PER_SKU)
}

/// The stock a SKU starts with: every seventh (from the third) gets half of what its orders
/// need.
fn initial_stock(sku_number: u64) -> u32 {
    if sku_number % 7 == 2 { u32::try_from(ORDERS_PER_SKU / 2).unwrap_or(1) } else { STOCK }
}

/// Runs the load as `options` say and audits it: the report (whether it passed is
/// [`Report::passed`]).
///
/// # Errors
/// When something it needs is missing or refuses (the database, the broker, the binary) —
/// not when the audit fails, which the report says.
pub async fn run(options: &Options) -> Result<Report, BoxError> {
    options.check()?;
    let database_url = match &options.database_url {
        Some(url) => url.clone(),
        None => env("DATABASE_URL")?,
    };
    let brokers = match &options.brokers {
        Some(brokers) => brokers.clone(),
        None => env("KAFKA_BROKERS")?,
    };
    let run = format!("l{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);

    let (database, url, prefix) = if options.spawn {
        let database = Database::create(&database_url, &run).await?;
        let url = database.url.clone();
        (Some(database), url, format!("{run}."))
    } else {
        (None, database_url, options.prefix.clone())
    };
    let result = drive(options, &run, &url, &brokers, &prefix).await;
    if let Some(database) = database {
        if options.keep {
            eprintln!("checkout-load: kept database {}", database.name);
        } else {
            database.drop_database().await;
        }
    }
    result
}

#[allow(clippy::too_many_lines)]
async fn drive(
    options: &Options,
    run: &str,
    url: &str,
    brokers: &str,
    prefix: &str,
) -> Result<Report, BoxError> {
    let options_db: PgConnectOptions =
        url.parse().map_err(|error| format!("not a PostgreSQL URL: {error}"))?;
    // The lag samples count the events behind each checkpoint; a backlog makes PostgreSQL's
    // planner JIT-compile that count on every sample, which took a tenth of the machine's CPU
    // at 50 checkouts/s. The generator measures; it must not compete.
    let options_db = options_db.options([("jit", "off")]);
    let store = PostgresEventStore::builder()
        .connect_options(options_db)
        .max_connections(u32::try_from(options.raw_clients.max(16) + 4).unwrap_or(64))
        .connect()
        .await
        .map_err(|error| format!("cannot reach PostgreSQL: {error}"))?;
    hosted::migrate(&store).await?;
    let bus = hosted::connect_bus(hosted::kafka_config(brokers), prefix).await?;
    let mut runners = Aggregates::new(&store, &SystemClock);
    // Restocks of one SKU commute, and several may race for its stream: decide again after a
    // conflict, as a front end would.
    let retry = Backoff::exponential(Duration::from_millis(2))
        .max_delay(Duration::from_millis(100))
        .jitter(0.5)
        .attempts(20);
    runners.inventory =
        Arc::new(AggregateRunner::new(store.clone(), ()).with_clock(SystemClock).with_retry(retry));
    {
        let app = hosted::app(&store, &bus, &runners, SystemClock).build()?;
        hosted::create_topics(&bus, app.topics()).await?;
    }

    let raw_ceiling = if options.raw_clients > 0 && options.raw_secs > 0.0 {
        let rate = raw_ceiling(
            &store,
            run,
            options.raw_clients,
            Duration::from_secs_f64(options.raw_secs),
        )
        .await?;
        Some((rate, options.raw_clients))
    } else {
        None
    };

    // The processes.
    let mut sink = None;
    let mut cluster = None;
    let logs = std::env::temp_dir().join(format!("checkout-load-{run}"));
    if options.spawn {
        let binary = match &options.service_bin {
            Some(binary) => binary.clone(),
            None => std::env::current_exe()?.with_file_name("checkout-service"),
        };
        if !binary.exists() {
            return Err(format!(
                "no checkout-service at {} (build it: cargo build --release -p checkout-saga \
                 --bin checkout-service, or pass --service-bin)",
                binary.display()
            )
            .into());
        }
        std::fs::create_dir_all(&logs)?;
        let otlp = if options.no_traces {
            None
        } else {
            let (address, counts, task) = otlp_sink().await?;
            sink = Some((counts, task));
            Some(address)
        };
        let mut started = Cluster::new(
            binary,
            url.to_owned(),
            brokers.to_owned(),
            prefix.to_owned(),
            logs.clone(),
            otlp,
        );
        for (role, count) in ROLES {
            for _ in 0..count {
                started.start(role)?;
            }
        }
        // Every process answers on its metrics address once it has started.
        let deadline = Instant::now() + Duration::from_secs(60);
        let waiting: Vec<(&str, SocketAddr)> =
            started.processes().iter().map(|process| (process.role, process.metrics)).collect();
        for (role, metrics) in waiting {
            while scrape(metrics).await.is_err() {
                if let Some(exited) = started.exited().first() {
                    return Err(format!("{exited} (its log: {})", logs.display()).into());
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "--role {role} did not serve its metrics within 60 s (its log: {})",
                        logs.display()
                    )
                    .into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        cluster = Some(Arc::new(Mutex::new(started)));
    }

    let servers = Servers::find(&store, brokers).await;
    let result =
        load(options, run, &store, &runners, cluster.as_ref(), raw_ceiling, &servers).await;

    let mut report = result?;
    if let Some(cluster) = &cluster {
        let mut cluster = lock(cluster);
        for exited in cluster.exited() {
            report.failures.push(format!("a process stopped during the run: {exited}"));
        }
        for unclean in cluster.stop() {
            report.failures.push(format!("on SIGTERM: {unclean}"));
        }
        report.logs = Some(logs.clone());
    }
    if let Some((counts, task)) = sink {
        task.abort();
        report.spans = Some(counts.spans.load(Ordering::Relaxed));
        if counts.requests.load(Ordering::Relaxed) == 0 {
            report.failures.push("no process exported a trace to the OTLP sink".into());
        }
    }
    store.pool().close().await;
    if options.spawn && !options.keep && report.passed() {
        let _ = std::fs::remove_dir_all(&logs);
        report.logs = None;
    }
    Ok(report)
}

/// What the issuing loop found.
#[derive(Debug, Default)]
struct Issued {
    orders: u64,
    plain: u64,
    max_lateness: Duration,
    last_start: Option<Instant>,
    errors: Vec<String>,
}

#[allow(clippy::too_many_lines)]
async fn load(
    options: &Options,
    run: &str,
    store: &PostgresEventStore,
    runners: &Aggregates<PostgresEventStore>,
    cluster: Option<&Arc<Mutex<Cluster>>>,
    raw_ceiling: Option<(f64, usize)>,
    servers: &Servers,
) -> Result<Report, BoxError> {
    // The follower, from the head of the log now.
    let tally = Arc::new(Mutex::new(Tally {
        run: format!("{run}-"),
        due: HashMap::new(),
        latency: histogram()?,
        orders: HashMap::new(),
        restocked: BTreeMap::new(),
        event_ids: HashSet::new(),
        duplicate_ids: 0,
        undecodable: Vec::new(),
        last_finished: None,
    }));
    let head = store.head().await?;
    let reader =
        LogReader::new(format!("load.{run}"), store.clone(), InMemoryCheckpointStore::new())
            .starting_after(head);
    let follower: ServiceHandle =
        service::spawn(LogConsumer::from_reader(reader, Follower(Arc::clone(&tally))));

    // Stock for every SKU the run will touch, then the warm-up checkouts.
    let rate = options.rate;
    let duration = Duration::from_secs_f64(options.duration);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total_orders = (rate * options.duration).round().max(1.0) as u64;
    for sku_number in 0..=total_orders / ORDERS_PER_SKU {
        let restock = Restock { quantity: initial_stock(sku_number), manual: false };
        runners.inventory.execute(sku(run, sku_number * ORDERS_PER_SKU), restock).await?;
    }
    for number in 0..WARM_UP {
        let (id, place) = order(run, number, true);
        runners.orders.execute(&id, place).await?;
    }
    let warm = Instant::now() + Duration::from_secs(120);
    loop {
        let finished = {
            let tally = lock(&tally);
            (0..WARM_UP)
                .filter(|number| {
                    tally
                        .orders
                        .get(&order(run, *number, true).0)
                        .is_some_and(|facts| facts.confirmed + facts.cancelled > 0)
                })
                .count()
        };
        if finished as u64 == WARM_UP {
            break;
        }
        if Instant::now() > warm {
            return Err(format!(
                "the warm-up checkouts did not finish within 120 s ({finished} of {WARM_UP}): \
                 are the processes running on this database and topic prefix?"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The CPU each process of interest uses from here to the end of the drain.
    let watched = {
        let cluster = cluster.cloned();
        let servers = servers.clone();
        move || {
            let mut pids = servers.pids();
            if let Some(cluster) = &cluster {
                pids.extend(lock(cluster).pids());
            }
            pids
        }
    };
    let cpu_before = Some(cpu_snapshot(&watched()));

    // The schedule: orders at `rate`, plain commands at their share.
    let plain_rate = if options.plain_share > 0.0 {
        4.0 * rate * options.plain_share / (1.0 - options.plain_share)
    } else {
        0.0
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total_plain = (plain_rate * options.duration).round() as u64;
    let start = Instant::now() + Duration::from_millis(50);
    let drain = Duration::from_secs_f64(options.drain_secs);

    let lags = Arc::new(Mutex::new(Lags::default()));
    let sampler = {
        let lags = Arc::clone(&lags);
        let cluster = cluster.cloned();
        let fixed = options.metrics.clone();
        let addresses = move || match &cluster {
            Some(cluster) => lock(cluster).processes().iter().map(|p| p.metrics).collect(),
            None => fixed.clone(),
        };
        // Sampled while orders are placed and until they have all finished (at most the drain).
        tokio::spawn(sample_lags(addresses, store.clone(), lags, start + duration + drain))
    };

    let kills = Arc::new(Mutex::new(Vec::new()));
    let killer = match (options.kill, cluster) {
        (true, Some(cluster)) => {
            let cluster = Arc::clone(cluster);
            let kills = Arc::clone(&kills);
            Some(tokio::spawn(async move {
                let roles: Vec<&'static str> = ROLES.iter().map(|(role, _)| *role).collect();
                #[allow(clippy::cast_precision_loss)]
                let spacing = duration.div_f64((roles.len() + 1) as f64);
                let mut restarts = JoinSet::new();
                for (index, role) in roles.into_iter().enumerate() {
                    #[allow(clippy::cast_possible_truncation)]
                    tokio::time::sleep_until((start + spacing * (index as u32 + 1)).into()).await;
                    let at = start.elapsed().as_secs_f64();
                    match lock(&cluster).kill(role) {
                        Ok(true) => {}
                        Ok(false) => {
                            lock(&kills)
                                .push(format!("no --role {role} process to kill at {at:.1} s"));
                            continue;
                        }
                        Err(error) => {
                            lock(&kills).push(format!(
                                "killing --role {role} at {at:.1} s failed: {error}"
                            ));
                            continue;
                        }
                    }
                    let (cluster, kills) = (Arc::clone(&cluster), Arc::clone(&kills));
                    restarts.spawn(async move {
                        let after = restart_after(role);
                        tokio::time::sleep(after).await;
                        let outcome = lock(&cluster).start(role);
                        lock(&kills).push(match outcome {
                            Ok(()) => format!(
                                "killed --role {role} (SIGKILL) at {at:.1} s, restarted {:.1} s later",
                                after.as_secs_f64()
                            ),
                            Err(error) => format!(
                                "killed --role {role} (SIGKILL) at {at:.1} s, restarting failed: {error}"
                            ),
                        });
                    });
                }
                restarts.join_all().await;
            }))
        }
        _ => None,
    };

    let issued = Arc::new(Mutex::new(Issued::default()));
    let plain_latency = Arc::new(Mutex::new(histogram()?));
    let mut tasks = JoinSet::new();
    let (mut next_order, mut next_plain) = (0u64, 0u64);
    loop {
        #[allow(clippy::cast_precision_loss)]
        let order_due = (next_order < total_orders)
            .then(|| start + Duration::from_secs_f64(next_order as f64 / rate));
        #[allow(clippy::cast_precision_loss)]
        let plain_due = (next_plain < total_plain)
            .then(|| start + Duration::from_secs_f64(next_plain as f64 / plain_rate));
        let (due, is_order) = match (order_due, plain_due) {
            (None, None) => break,
            (Some(order), Some(plain)) if plain < order => (plain, false),
            (Some(order), _) => (order, true),
            (None, Some(plain)) => (plain, false),
        };
        tokio::time::sleep_until(due.into()).await;
        let now = Instant::now();
        {
            let mut issued = lock(&issued);
            issued.max_lateness = issued.max_lateness.max(now.saturating_duration_since(due));
        }
        if is_order {
            let (id, place) = order(run, next_order, false);
            next_order += 1;
            lock(&tally).due.insert(id.clone(), due);
            let orders = Arc::clone(&runners.orders);
            let issued = Arc::clone(&issued);
            tasks.spawn(async move {
                let outcome = orders.execute(&id, place).await;
                let mut issued = lock(&issued);
                issued.orders += 1;
                issued.last_start = issued.last_start.max(Some(now));
                if let Err(error) = outcome
                    && issued.errors.len() < 20
                {
                    issued.errors.push(format!("placing {id}: {error}"));
                }
            });
        } else {
            // One unit of a SKU of its own (fifty restocks each), which orders never take.
            let sku = format!("{run}-plain{}", next_plain / 50);
            next_plain += 1;
            let inventory = Arc::clone(&runners.inventory);
            let issued = Arc::clone(&issued);
            let latency = Arc::clone(&plain_latency);
            tasks.spawn(async move {
                let outcome = inventory.execute(&sku, Restock { quantity: 1, manual: false }).await;
                lock(&latency).saturating_record(micros(due.elapsed()));
                let mut issued = lock(&issued);
                issued.plain += 1;
                if let Err(error) = outcome
                    && issued.errors.len() < 20
                {
                    issued.errors.push(format!("restocking {sku}: {error}"));
                }
            });
        }
        // Reap what finished, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}

    // The checkouts still running get the drain's time.
    let drained = Instant::now() + drain;
    loop {
        let running = lock(&tally).due.len();
        if running == 0 || Instant::now() > drained {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every killed process has been started again before the processes are stopped and the
    // run is audited.
    if let Some(killer) = killer {
        let _ = killer.await;
    }
    sampler.abort();
    let _ = sampler.await;

    let cpu = cpu_before.map(|before| cpu_use(&before, &watched()));
    // Checkouts still running count with their age now: a lower bound of their latency, so
    // that the percentiles don't leave out the slowest.
    let unfinished = {
        let mut tally = lock(&tally);
        let now = Instant::now();
        let ages: Vec<u64> =
            tally.due.drain().map(|(_, due)| micros(now.saturating_duration_since(due))).collect();
        for age in &ages {
            tally.latency.saturating_record(*age);
        }
        ages.len()
    };
    let mut failures = Vec::new();
    if let Some(cluster) = cluster {
        // The writers stop — the saga, then the command service — so that the log holds still
        // while it is audited (checkouts still running stay unfinished); the relay and the
        // board keep reading.
        let unclean = tokio::task::block_in_place(|| {
            let mut cluster = lock(cluster);
            let mut unclean: Vec<String> = cluster
                .exited()
                .into_iter()
                .map(|exited| format!("a process stopped during the run: {exited}"))
                .collect();
            unclean.extend(
                cluster
                    .stop_roles(&["checkout", "commands"])
                    .into_iter()
                    .map(|unclean| format!("on SIGTERM: {unclean}")),
            );
            unclean
        });
        failures.extend(unclean);
    }

    // The follower reads everything there is, then the audit.
    let head = store.head().await?;
    let reached = follower.reached(ReadToken::new(head), Duration::from_secs(60)).await;
    let _ = follower.stop().await;
    if let Err(stale) = reached {
        failures.push(format!("the follower did not reach the head of the log: {stale}"));
    }
    let issued = std::mem::take(&mut *lock(&issued));
    let tally = std::mem::replace(
        &mut *lock(&tally),
        Tally {
            run: String::new(),
            due: HashMap::new(),
            latency: histogram()?,
            orders: HashMap::new(),
            restocked: BTreeMap::new(),
            event_ids: HashSet::new(),
            duplicate_ids: 0,
            undecodable: Vec::new(),
            last_finished: None,
        },
    );
    let offered_rate = match issued.last_start {
        #[allow(clippy::cast_precision_loss)]
        Some(last) if issued.orders > 1 => {
            (issued.orders - 1) as f64 / last.saturating_duration_since(start).as_secs_f64()
        }
        _ => 0.0,
    };
    let max_lateness_allowed = Duration::from_secs_f64(options.max_lateness_ms / 1e3);
    if issued.max_lateness > max_lateness_allowed {
        failures.push(format!(
            "the offered rate was not held: an order or command started {:.1} ms after its due \
             time (allowed {:.0} ms); orders were started at {offered_rate:.1}/s of {rate:.1}/s",
            issued.max_lateness.as_secs_f64() * 1e3,
            options.max_lateness_ms
        ));
    }
    if !issued.errors.is_empty() {
        failures.push(format!("{} command(s) of the generator failed", issued.errors.len()));
    }
    if unfinished > 0 {
        failures.push(format!(
            "{unfinished} checkout(s) had not finished {:.0} s after the last order (their \
             latency counts as their age then)",
            options.drain_secs
        ));
    }
    for (series, samples) in &lock(&lags).samples {
        let largest = samples.iter().copied().fold(0.0, f64::max);
        if series.starts_with("checkpoint ")
            && series.ends_with("seconds behind")
            && largest > options.max_lag_secs
        {
            failures.push(format!(
                "lag not bounded: {series} reached {largest:.1} s (allowed {:.0} s)",
                options.max_lag_secs
            ));
        }
    }
    let audit = audit(run, &tally, store, runners, total_orders, &mut failures).await?;

    let end = tally.last_finished.unwrap_or_else(Instant::now);
    let span = end.saturating_duration_since(start).as_secs_f64().max(1e-3);
    #[allow(clippy::cast_precision_loss)]
    let report = Report {
        target_rate: rate,
        duration,
        orders: issued.orders,
        plain: issued.plain,
        command_errors: issued.errors,
        offered_rate,
        max_lateness: issued.max_lateness,
        finished: audit.finished,
        confirmed: audit.confirmed,
        achieved_rate: audit.finished as f64 / span,
        commands_per_second: (audit.saga_commands + audit.finished + issued.plain) as f64 / span,
        latency: Latency::of(&tally.latency),
        plain_latency: Latency::of(&lock(&plain_latency)),
        lags: {
            let lags = lock(&lags);
            let mut series = Vec::new();
            for (name, samples) in &lags.samples {
                let mut sorted = samples.clone();
                sorted.sort_by(f64::total_cmp);
                let at = |q: f64| {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
                    sorted.get(index).copied().unwrap_or(0.0)
                };
                series.push(LagSeries {
                    series: name.clone(),
                    samples: sorted.len(),
                    max: at(1.0),
                    p99: at(0.99),
                });
            }
            series
        },
        scrape_failures: lock(&lags).scrape_failures,
        raw_ceiling,
        kills: lock(&kills).clone(),
        cpu,
        spans: None,
        failures,
        logs: None,
    };
    Ok(report)
}

/// What the audit counted.
struct Audited {
    /// Measured checkouts finished.
    finished: u64,
    /// Of those, confirmed.
    confirmed: u64,
    /// The saga's commands for the measured checkouts, as their events show.
    saga_commands: u64,
}

/// Adds to `failures` whatever the tally, the aggregates and the board disagree on.
#[allow(clippy::too_many_lines)]
async fn audit(
    run: &str,
    tally: &Tally,
    store: &PostgresEventStore,
    runners: &Aggregates<PostgresEventStore>,
    total_orders: u64,
    failures: &mut Vec<String>,
) -> Result<Audited, BoxError> {
    let mut problems: BTreeMap<&'static str, (u64, Vec<String>)> = BTreeMap::new();
    let mut problem = |check: &'static str, example: String| {
        let entry = problems.entry(check).or_default();
        entry.0 += 1;
        if entry.1.len() < 3 {
            entry.1.push(example);
        }
    };
    let measured: HashSet<String> =
        (0..total_orders).map(|number| order(run, number, false).0).collect();
    let mut audited = Audited { finished: 0, confirmed: 0, saga_commands: 0 };
    let mut money_taken: i128 = 0;
    let mut money_owed: i128 = 0;
    // By SKU: the units the confirmed orders (and the checkouts still running that reserved)
    // hold, and those orders.
    let mut held_by_sku: BTreeMap<String, (u64, HashSet<String>)> = BTreeMap::new();
    for id in &measured {
        if !tally.orders.contains_key(id) {
            problem("an order placed has no events (lost)", id.clone());
        }
    }
    for (id, facts) in &tally.orders {
        if facts.placed != 1 {
            problem(
                "an order with events was not placed exactly once",
                format!("{id}: {}", facts.placed),
            );
            continue;
        }
        let finished = facts.confirmed + facts.cancelled;
        if finished != 1 {
            problem(
                "an order did not end exactly once (confirmed or cancelled)",
                format!("{id}: {} confirmed, {} cancelled", facts.confirmed, facts.cancelled),
            );
        }
        if facts.captures > 1 {
            problem("a payment was captured more than once", format!("{id}: {}", facts.captures));
        }
        if facts.refunds > 1 {
            problem("a payment was refunded more than once", format!("{id}: {}", facts.refunds));
        }
        if facts.reservations > 1 {
            problem(
                "stock was reserved more than once for an order",
                format!("{id}: {}", facts.reservations),
            );
        }
        if facts.declined && facts.captures > 0 {
            problem("a declined card was charged", id.clone());
        }
        let net_money = i128::from(facts.captured) - i128::from(facts.refunded);
        let held = i64::from(facts.reservations) - i64::from(facts.releases);
        if finished == 1 {
            money_taken += net_money;
        } else if finished == 0 && held > 0 {
            // A checkout still running holds its reservation (and maybe money) for now.
            let entry = held_by_sku.entry(facts.sku.clone()).or_default();
            entry.0 += u64::from(facts.quantity);
            entry.1.insert(id.clone());
        }
        if facts.confirmed == 1 && finished == 1 {
            money_owed += i128::from(facts.total);
            if facts.captured != facts.total || facts.refunds > 0 {
                problem(
                    "a confirmed order was not captured once for its total",
                    format!(
                        "{id}: captured {}, refunded {}, total {}",
                        facts.captured, facts.refunded, facts.total
                    ),
                );
            }
            if held != 1 {
                problem("a confirmed order does not hold one reservation", format!("{id}: {held}"));
            }
            let entry = held_by_sku.entry(facts.sku.clone()).or_default();
            entry.0 += u64::from(facts.quantity);
            entry.1.insert(id.clone());
        }
        if facts.cancelled == 1 && finished == 1 {
            if net_money != 0 {
                problem("a cancelled order kept money", format!("{id}: {net_money}"));
            }
            if held != 0 {
                problem("a cancelled order kept its reservation", format!("{id}: {held}"));
            }
        }
        if measured.contains(id) && finished == 1 {
            audited.finished += 1;
            audited.confirmed += u64::from(facts.confirmed);
            // Charge, then confirm or cancel; reserve after a capture; refund and release as
            // their events show.
            audited.saga_commands += 2
                + u64::from(facts.captures)
                + u64::from(facts.refunds)
                + u64::from(facts.releases);
        }
    }
    if money_taken != money_owed {
        problem(
            "the money captured and not refunded for finished checkouts is not the confirmed orders' total",
            format!("taken {money_taken}, owed {money_owed}"),
        );
    }
    if tally.duplicate_ids > 0 {
        problem("an event id was seen twice in the log", format!("{} times", tally.duplicate_ids));
    }
    for undecodable in &tally.undecodable {
        problem("an event could not be decoded", undecodable.clone());
    }
    let (written_twice,): (i64,) =
        sqlx::query_as("SELECT count(*) - count(DISTINCT event_id) FROM events")
            .fetch_one(store.pool())
            .await?;
    if written_twice != 0 {
        problem("an event id was written twice", format!("{written_twice} rows"));
    }

    // Stock: what was restocked, less what the confirmed orders took, and their reservations.
    let mut levels = BTreeMap::new();
    for (sku, restocked) in &tally.restocked {
        let inventory = runners.inventory.load(sku).await?.state;
        let (taken, holders) = held_by_sku.remove(sku).unwrap_or_default();
        let expected = restocked.saturating_sub(taken);
        if u64::from(inventory.available) != expected {
            problem(
                "a SKU's stock is not what was restocked less what confirmed (and running) orders hold",
                format!("{sku}: {} available, expected {expected}", inventory.available),
            );
        }
        let held: HashSet<String> = inventory.reserved.keys().cloned().collect();
        if held != holders {
            problem(
                "a SKU's reservations are not its confirmed (and running) orders'",
                format!("{sku}: {} held, {} expected", held.len(), holders.len()),
            );
        }
        let reserved: u32 = inventory.reserved.values().sum();
        levels.insert(sku.clone(), StockLevel { available: inventory.available, reserved });
    }
    for sku in held_by_sku.keys() {
        problem("confirmed orders took stock of a SKU never restocked", sku.clone());
    }

    // The board, once it has caught up: every order's outcome, every SKU's stock.
    let read = PostgresReadStore::new(store.pool().clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    let board_problems = loop {
        let lines: HashMap<String, OrderLine> =
            read.list::<OrderLine>(board::ORDERS, &format!("{run}-")).await?.into_iter().collect();
        let stock: HashMap<String, StockLevel> =
            read.list::<StockLevel>(board::STOCK, &format!("{run}-")).await?.into_iter().collect();
        let mut found = Vec::new();
        for (id, facts) in &tally.orders {
            if facts.placed != 1 {
                continue;
            }
            let expected = if facts.confirmed == 1 {
                Some(true)
            } else if facts.cancelled == 1 {
                Some(false)
            } else {
                None
            };
            let shown =
                lines.get(id).map(|line| (line.finished(), line.status == board::CONFIRMED));
            let agrees = match (expected, shown) {
                (Some(confirmed), Some((true, shown))) => confirmed == shown,
                (None, Some((false, _))) => true,
                _ => false,
            };
            if !agrees {
                found.push(format!(
                    "order {id}: board {:?}",
                    lines.get(id).map(|line| &line.status)
                ));
            }
        }
        for (sku, level) in &levels {
            if stock.get(sku) != Some(level) {
                found.push(format!("stock {sku}: board {:?}, aggregate {level:?}", stock.get(sku)));
            }
        }
        if found.is_empty() || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for found in board_problems {
        problem("the board disagrees with the aggregates (after 60 s)", found);
    }

    for (check, (count, examples)) in problems {
        failures.push(format!("{check}: {count} (e.g. {})", examples.join("; ")));
    }
    Ok(audited)
}
