//! Two processes, each with a runner whose hot-aggregate cache is on, writing one stream at the
//! same time: nothing is lost, and no command decided on a state the other process had made
//! stale is ever committed.
//!
//! Each event records the version of the state its command was decided on, so a stale decision
//! that committed would show as an event whose recorded version is not the one before its own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the test failing

mod common;

use std::io::{BufRead, BufReader, Write};
use std::num::NonZeroUsize;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use composable::backoff::Backoff;
use composable::testing::HookedStore;
use composable::{AggregateRunner, EventStore, Version, aggregate, apply, command, event};
use composable_postgres::PostgresEventStore;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

#[event(name = "turns.taken", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Taken {
    /// The process that took the turn.
    pub by: u8,
    /// The version of the state the turn was decided on.
    pub seen: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Take {
    pub by: u8,
}

/// Turns taken on one stream, in order.
#[derive(Debug, Clone, Default)]
pub struct Turns {
    taken: u64,
}

#[aggregate(stream = "turns")]
impl Turns {
    #[command]
    fn take(&self, command: Take) -> Taken {
        Taken { by: command.by, seen: self.taken }
    }

    #[apply]
    fn taken(&mut self, _event: &Taken) {
        self.taken += 1;
    }
}

const DATABASE: &str = "CACHED_RUNNERS_DATABASE";
const WRITER: &str = "CACHED_RUNNERS_WRITER";
const TURNS: u64 = 300;

/// One writer: waits for `go` on stdin, takes `TURNS` turns on stream `turns-1` through a
/// cached runner, then prints `took <turns> read <stream reads>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the two-process test, started by it"]
async fn cached_writer_process() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let by: u8 = var(WRITER).parse().unwrap();
    let store = PostgresEventStore::builder()
        .connect_options(common::admin_options().database(&var(DATABASE)))
        .max_connections(4)
        .connect()
        .await
        .unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    let store = HookedStore::new(store).on_read_stream(move |_, _| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let runner = AggregateRunner::<Turns, _>::new(store, ())
        .with_cache(NonZeroUsize::new(16).unwrap())
        .with_retry(Backoff::immediate(1_000));
    println!("ready");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let stream = runner.stream_id(1).unwrap();
    for turn in 0..TURNS {
        if turn == TURNS / 2 {
            // Half way, wait for the other process to have taken a turn too, so that the two
            // overlap however the machine schedules them: one of them then decides on a stale
            // state at least once.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while runner.store().stream_version(&stream).await.unwrap().get() <= turn {
                assert!(std::time::Instant::now() < deadline, "the other writer never wrote");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        runner.execute(1, Take { by }).await.unwrap();
    }
    println!("took {TURNS} read {}", reads.load(Ordering::SeqCst));
}

fn start(database: &str, by: u8) -> (Child, impl Iterator<Item = String>) {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--ignored", "--exact", "cached_writer_process", "--nocapture"])
        .env(DATABASE, database)
        .env(WRITER, by.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start a writer process");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    // The harness may have begun the line with the test's name.
    let ready = lines.any(|line| line.trim_end().ends_with("ready"));
    assert!(ready, "writer {by} did not start");
    (child, lines)
}

/// `took <turns> read <reads>`, from a writer's output.
fn outcome(lines: &mut impl Iterator<Item = String>, by: u8) -> (u64, u64) {
    let line = lines
        .find_map(|line| line.find("took ").map(|at| line[at..].to_owned()))
        .unwrap_or_else(|| panic!("writer {by} did not finish"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[1].parse().unwrap(), words[3].parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_with_caches_lose_nothing_and_never_commit_a_stale_decision() {
    let db = common::test_database().await;
    let mut writers: Vec<_> = [1u8, 2].map(|by| (by, start(&db.name, by))).into();
    for (_, (child, _)) in &mut writers {
        writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
    }
    let mut reads = Vec::new();
    for (by, (mut child, mut lines)) in writers {
        let (took, read) = outcome(&mut lines, by);
        assert_eq!(took, TURNS);
        reads.push(read);
        assert!(child.wait().unwrap().success(), "writer {by} failed");
    }

    let stream = composable::StreamId::new("turns", 1).unwrap();
    let events: Vec<_> = db.store.read_stream(&stream, Version::ZERO).try_collect().await.unwrap();
    assert_eq!(events.len() as u64, 2 * TURNS, "every turn of both processes, once");
    let mut by_writer = [0u64; 2];
    for recorded in &events {
        let TurnsEvent::Taken(taken) =
            recorded.decode::<TurnsEvent, _>(&composable::Bincode).unwrap();
        assert_eq!(
            taken.seen + 1,
            recorded.stream_version.get(),
            "a turn decided on version {} was committed at {}",
            taken.seen,
            recorded.stream_version
        );
        by_writer[usize::from(taken.by - 1)] += 1;
    }
    assert_eq!(by_writer, [TURNS, TURNS]);
    // Each writer loaded the stream once to begin with; every load after that was a cached
    // state found stale. There was at least one, and the caches saved loads.
    eprintln!("stream reads by the two writers: {reads:?}");
    assert!(reads.iter().sum::<u64>() > 2, "no cached state was ever stale: {reads:?}");
    for read in reads {
        assert!(read < TURNS, "the cache saved loads ({read} reads for {TURNS} turns)");
    }
    db.drop_database().await;
}
