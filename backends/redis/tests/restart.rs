//! The read store survives a Redis restart: while the server is down its operations fail with
//! a transient error (never a panic or a hang), and once it is back the same `RedisReadStore`,
//! on the same `ConnectionManager`, commits and reads again. A projection whose store calls go
//! through a circuit breaker stops calling the server once the breaker opens, failing its
//! batches at once, and applies them when a probe gets through after the restart.
//!
//! Its own test binary, because it stops the shared server under every other test: run it
//! alone (`scripts/test` runs it before the others).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use composable::checkpoint::{CheckpointError, CheckpointStore};
use composable::consumer::{Checkpoint, Saved};
use composable::projection::{ReadStore, Scope};

/// The projection the batches here write for.
const SCOPE: Scope = Scope::new("restart", 1);
use composable::breaker::{BreakerPolicy, BreakerState, CircuitBreaker};
use composable::consumer::EventHandler;
use composable::projection::{ProjectionError, ProjectionRunner};
use composable::stream::{Position, StreamId, Version};
use composable::{
    Bincode, Codec, EventMetadata, RecordedEvent, TestClock, event, project, projection,
};
use composable_redis::{RedisBatch, RedisReadError, RedisReadStore};
use serde::{Deserialize, Serialize};

#[event(name = "restart.counted", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counted {
    pub by: i64,
}

/// Counts what it is told to.
#[derive(Debug)]
pub struct Counting;

#[projection(name = "counting", store = RedisReadStore)]
impl Counting {
    #[project]
    fn counted(&self, batch: &mut RedisBatch, event: &Counted) -> Result<(), RedisReadError> {
        batch.incr_by("counted", event.by)
    }
}

/// A `restart.counted` event by `by`, at `position`, as the log would deliver it.
fn counted(by: i64, position: u64) -> RecordedEvent {
    let now = chrono::Utc::now();
    RecordedEvent {
        position: Position::new(1, position),
        stream_id: StreamId::new("counter", position).expect("a stream id"),
        stream_version: Version(1),
        event_id: uuid::Uuid::now_v7(),
        name: "restart.counted".to_owned(),
        version: 1,
        format: Bincode.format().to_owned(),
        payload: Bincode.encode(&Counted { by }).expect("encodes"),
        metadata: EventMetadata::new_flow(now),
        recorded_at: now,
    }
}

fn env(name: &str) -> String {
    std::env::var(name).ok().filter(|value| !value.is_empty()).unwrap_or_else(|| {
        panic!(
            "{name} is not set: the restart test stops and starts the server it runs against, \
             so it needs the one `redis_start` started (it exports REDIS_URL, REDIS_PORT, \
             REDIS_DIR and REDIS_START_COMMAND); {}",
            common::HOW_TO_START
        )
    })
}

fn redis_cli(port: &str, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", port])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("run redis-cli: {error}"));
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn answers(port: &str) -> bool {
    redis_cli(port, &["ping"]).is_some_and(|reply| reply == "PONG")
}

fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "{what}: not within {deadline:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_server(port: &str) {
    // `shutdown nosave` answers nothing (the connection closes), so its status says little.
    let _ = redis_cli(port, &["shutdown", "nosave"]);
    wait_until("Redis stops", Duration::from_secs(10), || !answers(port));
}

fn start_server(port: &str, command: &str) {
    let status = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|error| panic!("run `{command}`: {error}"));
    assert!(status.success(), "`{command}` failed: {status}");
    wait_until("Redis starts again", Duration::from_secs(10), || answers(port));
}

async fn count(store: &RedisReadStore, key: &str, by: i64) -> Result<(), RedisReadError> {
    let mut batch = store.begin(SCOPE).await?;
    batch.incr_by(key, by)?;
    store.commit_batch(batch).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_keeps_working_across_a_server_restart() {
    let (port, command) = (env("REDIS_PORT"), env("REDIS_START_COMMAND"));
    let _ = env("REDIS_DIR");
    let store = common::store().await;
    // The projection behind a breaker, below, keeps its read model under a prefix of its own.
    let counts = common::store().await;
    count(&store, "before", 1).await.expect("a commit before the restart");
    let at =
        Checkpoint { name: "projection.restart", after: Position::START, to: Position::new(1, 1) };
    let batch = store.begin(SCOPE).await.expect("begin");
    assert_eq!(store.commit(batch, at).await.expect("commit"), Saved::ByHandler);

    tokio::task::spawn_blocking({
        let port = port.clone();
        move || stop_server(&port)
    })
    .await
    .expect("stop the server");

    // Down: every kind of operation fails, transiently, within the manager's retries.
    let deadline = Duration::from_secs(60);
    let error = tokio::time::timeout(deadline, count(&store, "during", 1))
        .await
        .expect("a commit while Redis is down fails rather than hangs")
        .expect_err("Redis is down");
    assert!(
        matches!(error, RedisReadError::Redis { transient: true, .. }) && error.is_transient(),
        "a commit while Redis is down: {error:?}"
    );
    let error = tokio::time::timeout(deadline, store.counter("before"))
        .await
        .expect("a read while Redis is down fails rather than hangs")
        .expect_err("Redis is down");
    assert!(error.is_transient(), "a read while Redis is down: {error:?}");
    let error = tokio::time::timeout(deadline, store.checkpoints().load("projection.restart"))
        .await
        .expect("a checkpoint load while Redis is down fails rather than hangs")
        .expect_err("Redis is down");
    assert!(
        matches!(error, CheckpointError::Unavailable { .. }) && error.is_transient(),
        "a checkpoint load while Redis is down: {error:?}"
    );

    // A projection behind a breaker that opens after two failures of the store.
    let clock = TestClock::new();
    let policy = BreakerPolicy::default().window(2).open_for(Duration::from_secs(10));
    let breaker = CircuitBreaker::new("projection.counting", policy).with_clock(clock.clone());
    let mut counting =
        ProjectionRunner::new(Counting, counts.clone()).with_breaker(breaker.clone());
    for position in 1..=2 {
        let error = tokio::time::timeout(deadline, counting.handle(&[counted(1, position)]))
            .await
            .expect("a batch while Redis is down fails rather than hangs")
            .expect_err("Redis is down");
        assert!(matches!(error, ProjectionError::Store { .. }), "{error}");
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    let refused = Instant::now();
    let error = counting.handle(&[counted(1, 3)]).await.expect_err("the breaker is open");
    assert!(matches!(error, ProjectionError::StoreUnavailable { .. }), "{error}");
    assert!(
        refused.elapsed() < Duration::from_millis(500),
        "refused at once, without calling Redis: {:?}",
        refused.elapsed()
    );

    tokio::task::spawn_blocking({
        let (port, command) = (port.clone(), command.clone());
        move || start_server(&port, &command)
    })
    .await
    .expect("start the server again");

    // Back (empty: nothing was saved): the same store, on the same manager, works again.
    let until = Instant::now() + Duration::from_secs(30);
    let mut failures = 0;
    loop {
        match count(&store, "after", 2).await {
            Ok(()) => break,
            Err(error) if error.is_transient() => {
                failures += 1;
                assert!(Instant::now() < until, "still failing 30 s after the restart: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => {
                panic!("expected success or a transient error after the restart: {other}")
            }
        }
    }
    assert_eq!(store.counter("after").await.expect("read after the restart"), 2);
    let checkpoints = store.checkpoints();
    assert_eq!(checkpoints.load("projection.restart").await.expect("load"), Position::START);
    let at =
        Checkpoint { name: "projection.restart", after: Position::START, to: Position::new(2, 1) };
    let batch = store.begin(SCOPE).await.expect("begin");
    assert_eq!(store.commit(batch, at).await.expect("commit after the restart"), Saved::ByHandler);
    assert_eq!(checkpoints.load("projection.restart").await.expect("load"), Position::new(2, 1));
    eprintln!("after the restart: {failures} transient failures before the first commit");

    // Once its time is up, a probe goes through to the server that is back: the breaker closes
    // and the batches it refused are applied as they come again.
    clock.advance(Duration::from_secs(10)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    for position in 1..=3 {
        counting.handle(&[counted(1, position)]).await.expect("applied once Redis is back");
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(counts.counter("counted").await.expect("read"), 3);
}
