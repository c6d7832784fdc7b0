//! A projection following Kafka into a PostgreSQL read model, as a real process killed with
//! SIGKILL while it works through the topic and started again. At the kill, each stream's total
//! in the read model is exactly the sum of the events up to the version it keeps for that stream
//! (nothing half applied, nothing twice); after the restart — which catches up from the log
//! over what the bus had delivered, then follows the bus again — the read model equals the sum
//! of every event appended, as a rebuild from scratch would make it.
//!
//! The test binary is its own child: `projection_process` (ignored in normal runs) is the
//! projection, started with `--ignored --exact`. Needs `DATABASE_URL` and `KAFKA_BROKERS`
//! (`scripts/test` starts a private PostgreSQL and a tansu broker and sets both).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use composable::projection::ProjectionRunner;
use composable::relay::Relay;
use composable::service;
use composable::{
    Bincode, EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StreamId,
    aggregate, apply, command, event, project, projection,
};
use composable_postgres::{
    PostgresBatch, PostgresCheckpointStore, PostgresEventStore, PostgresReadStore, ReadModelError,
};
use serde::{Deserialize, Serialize};

#[event(name = "ledger.deposited", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    pub cents: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deposit {
    pub cents: u64,
}

/// Only for its event set, to encode the events the test appends (on streams of a category of
/// the test's own, so runs against one broker do not share a topic).
#[derive(Debug, Default)]
pub struct Ledger;

#[aggregate(stream = "ledger")]
impl Ledger {
    #[command]
    fn deposit(&self, command: Deposit) -> Deposited {
        Deposited { cents: command.cents }
    }

    #[apply]
    fn deposited(&mut self, _event: &Deposited) {}
}

/// Cents per stream, and in all.
struct Totals;

#[projection(name = "ledger_totals", store = PostgresReadStore)]
impl Totals {
    #[project]
    async fn deposited(
        &self,
        batch: &mut PostgresBatch,
        deposited: &Deposited,
        envelope: &RecordedEvent,
    ) -> Result<(), ReadModelError> {
        for key in [envelope.stream_id.as_str(), "all"] {
            let total: u64 = batch.get("totals", key).await?.unwrap_or(0);
            batch.put("totals", key, &(total + deposited.cents)).await?;
        }
        Ok(())
    }
}

const STREAMS: u64 = 12;
const FIRST: u64 = 1_200;
const AFTER_RESTART: u64 = 120;

/// The cents of the `n`th event appended (from 0): distinct enough that a lost or repeated
/// event shows in a total.
fn cents(n: u64) -> u64 {
    1 + n % 97
}

/// The child's environment.
const DATABASE: &str = "PROJECTION_CRASH_DATABASE";
const TOPIC: &str = "PROJECTION_CRASH_TOPIC";
const GROUP: &str = "PROJECTION_CRASH_GROUP";

/// The projection process: runs until killed, after saying `following` once caught up with the
/// log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the crash test, started by it"]
async fn projection_process() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let (store, read) = stores(&var(DATABASE)).await;
    let bus = common::bus().await;
    let service = ProjectionRunner::new(Totals, read)
        .from_bus(store, bus, [var(TOPIC)])
        .with_group(var(GROUP));
    let mut handle = service::spawn(service);
    let health = handle.wait_until(|health| health.caught_up).await;
    assert!(!health.is_finished(), "the projection failed: {health:?}");
    println!("following");
    let health = handle.wait_until(|health| health.is_finished()).await;
    panic!("the projection stopped: {health:?}");
}

/// The event store and the read store on database `name`.
async fn stores(name: &str) -> (PostgresEventStore, PostgresReadStore) {
    let store = PostgresEventStore::builder()
        .connect_options(common::admin_options().database(name))
        .max_connections(4)
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connect to {name}: {error}"));
    let read = PostgresReadStore::new(store.pool().clone());
    (store, read)
}

/// Starts the projection process and waits until it follows the bus.
fn start(database: &str, topic: &str, group: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--ignored", "--exact", "projection_process", "--nocapture"])
        .env(DATABASE, database)
        .env(TOPIC, topic)
        .env(GROUP, group)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the projection process");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    // The harness may have begun the line with the test's name.
    let following = lines.any(|line| line.trim_end().ends_with("following"));
    assert!(following, "the projection process did not start following the bus");
    // Read on until it dies: the harness writes to its stdout later ("has been running for
    // over 60 seconds"), which a closed pipe would make fail.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

fn kill(mut child: Child) {
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-KILL", &pid]).status().expect("run kill");
    assert!(killed.success(), "kill -KILL {pid}");
    child.wait().expect("reap the killed process");
}

/// Appends events `from..to`, round robin over the streams, and relays them to the topic.
async fn append_and_relay(
    store: &PostgresEventStore,
    relay: &mut Relay<PostgresEventStore, composable_kafka::KafkaBus, PostgresCheckpointStore>,
    category: &str,
    (from, to): (u64, u64),
) -> BTreeMap<String, u64> {
    let mut appended = BTreeMap::new();
    for n in from..to {
        let stream = StreamId::new(category, n % STREAMS).expect("a stream id");
        let event = LedgerEvent::Deposited(Deposited { cents: cents(n) });
        let new = NewEvent::encode(&event, &Bincode, EventMetadata::new_flow(Utc::now()))
            .expect("encode");
        store.append(&stream, ExpectedVersion::Any, vec![new]).await.expect("append");
        *appended.entry(stream.as_str().to_owned()).or_insert(0) += cents(n);
    }
    relay.catch_up().await.expect("relay");
    appended
}

async fn total(read: &PostgresReadStore, key: &str) -> u64 {
    read.get("totals", key).await.expect("read a total").unwrap_or(0)
}

/// Waits until the total of everything reaches `expected`.
async fn all_reach(read: &PostgresReadStore, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while total(read, "all").await < expected {
        assert!(
            Instant::now() < deadline,
            "{} of {expected} cents in 120 s",
            total(read, "all").await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_following_kafka_killed_mid_topic_and_restarted_applies_each_event_once() {
    let store = common::fresh_store().await;
    let read = PostgresReadStore::new(store.pool().clone());
    read.migrate().await.expect("migrate the read store");
    let (database,): (String,) = sqlx::query_as("SELECT current_database()")
        .fetch_one(store.pool())
        .await
        .expect("the database's name");
    let bus = common::bus().await;
    let category = common::unique("ledger");
    let topic = composable::bus::topic_for(&category);
    common::create_topics(&bus, &[&topic], 3).await;
    let group = common::unique("projection.ledger_totals.");
    let checkpoints = PostgresCheckpointStore::new(store.pool().clone());
    let mut relay = Relay::named("relay", store.clone(), bus.clone(), checkpoints).batch_size(200);

    // Started on an empty log, it follows the bus; the events reach it only from there.
    let child = start(&database, &topic, &group);
    let mut expected = append_and_relay(&store, &mut relay, &category, (0, FIRST)).await;
    let everything: u64 = expected.values().sum();
    let deadline = Instant::now() + Duration::from_secs(120);
    while total(&read, "all").await < everything / 10 {
        assert!(Instant::now() < deadline, "the projection applied little in 120 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill(child);

    // At the kill: every stream's total is the sum of exactly the events up to the version
    // kept for it.
    let applied: Vec<(String, i64)> =
        sqlx::query_as("SELECT stream_id, version FROM projection_streams WHERE checkpoint = $1")
            .bind("projection.ledger_totals")
            .fetch_all(store.pool())
            .await
            .expect("read the streams' versions");
    let mut sum_at_kill = 0;
    for (stream, version) in &applied {
        let index: u64 = stream.rsplit('-').next().and_then(|id| id.parse().ok()).expect("an id");
        let up_to: u64 = (0..u64::try_from(*version).expect("a version"))
            .map(|k| cents(index + k * STREAMS))
            .sum();
        assert_eq!(total(&read, stream).await, up_to, "{stream} at version {version}");
        sum_at_kill += up_to;
    }
    assert_eq!(total(&read, "all").await, sum_at_kill, "the total of all is the streams' sum");
    assert!(sum_at_kill < everything, "killed before the end of the topic");

    // Restarted: caught up from the log, then following the bus, where events come again. In a
    // group of its own, so that the whole topic is delivered again and every event the killed
    // process applied must be recognised: tansu 0.6 may keep partitions assigned to the killed
    // member of the old group (`common::REJOIN_AFTER_KILL`).
    tokio::time::sleep(common::REJOIN_AFTER_KILL).await;
    let group = common::unique("projection.ledger_totals.restarted.");
    let child = start(&database, &topic, &group);
    let more =
        append_and_relay(&store, &mut relay, &category, (FIRST, FIRST + AFTER_RESTART)).await;
    for (stream, cents) in more {
        *expected.entry(stream).or_insert(0) += cents;
    }
    let everything: u64 = expected.values().sum();
    all_reach(&read, everything).await;
    kill(child);
    for (stream, cents) in &expected {
        assert_eq!(total(&read, stream).await, *cents, "{stream}: each event applied once");
    }
    assert_eq!(total(&read, "all").await, everything);
}
