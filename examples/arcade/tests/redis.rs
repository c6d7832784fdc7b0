//! The arcade's read models on a real Redis (and, for the crash, PostgreSQL): the demo, the
//! session cache's TTL counted from when the session started, and a projection process killed
//! with SIGKILL in the middle of catching up — at the kill the leaderboard holds exactly the
//! events up to its checkpoint; restarted, it carries on; the whole log delivered again changes
//! nothing; and it ends equal to a rebuild from scratch.
//!
//! Needs `REDIS_URL` and `DATABASE_URL` (`scripts/test` starts both).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arcade::{
    GAMES, Leaderboard, POINTS, SESSION_TTL, Session, SessionStarted, Sessions, read_models,
    session_key,
};
use composable::checkpoint::CheckpointStore;
use composable::consumer::EventHandler;
use composable::projection::{ProjectionRunner, ReadStore, Scope};
use composable::testing::ProjectionTest;
use composable::{Bincode, EventMetadata, EventStore, NewEvent, Position};
use composable_postgres::PostgresEventStore;
use composable_redis::RedisReadStore;
use sqlx::{Connection, Executor, PgConnection};

const BINARY: &str = env!("CARGO_BIN_EXE_arcade");

fn env(name: &str) -> String {
    std::env::var(name).ok().filter(|value| !value.is_empty()).unwrap_or_else(|| {
        panic!(
            "{name} is not set: run `scripts/test` (it starts a private Redis and PostgreSQL), \
             or start them in this shell with scripts/lib/redis.sh and scripts/lib/postgres.sh"
        )
    })
}

fn prefix() -> String {
    format!("arcade-test-{}", uuid::Uuid::now_v7().simple())
}

#[test]
fn the_demo_prints_the_leaderboard_and_the_sessions() {
    let output = Command::new(BINARY).env("REDIS_URL", env("REDIS_URL")).output().expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    for line in [
        "leaderboard (4 games):",
        "  1. bob 300",
        "  2. ada 200",
        "  3. cy 50",
        "session of bob: none",
        "cached for 30 more min",
    ] {
        assert!(printed.contains(line), "missing `{line}` in:\n{printed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_cached_for_what_is_left_of_its_ttl() {
    let (sessions, _) = read_models(&env("REDIS_URL"), &prefix()).await.expect("Redis");
    let mut test = ProjectionTest::new(Sessions, sessions);
    test.given("player-ada", SessionStarted { device: "phone".into() }).await;
    // A session that started 40 minutes ago has expired: a rebuild does not bring it back.
    let long_ago = chrono::Utc::now() - chrono::Duration::minutes(40);
    let old = NewEvent::encode(
        &arcade::PlayerEvent::from(SessionStarted { device: "tv".into() }),
        &Bincode,
        EventMetadata::new_flow(long_ago),
    )
    .expect("encode");
    test.given_raw("player-bob", old).await;
    let read = test.then().await;
    let ada = read.get::<Session>(&session_key("ada")).await.unwrap().expect("ada's session");
    assert_eq!(ada.device, "phone");
    let left = read.ttl(&session_key("ada")).await.unwrap().expect("a TTL");
    assert!(left <= SESSION_TTL && left > SESSION_TTL - Duration::from_secs(60), "{left:?}");
    assert_eq!(read.get::<Session>(&session_key("bob")).await.unwrap(), None);
}

/// A fresh database for the events.
async fn database() -> (String, String) {
    let admin_url = env("DATABASE_URL");
    let mut admin = PgConnection::connect(&admin_url).await.expect("reach PostgreSQL");
    let name = format!("arcade_{}", uuid::Uuid::now_v7().simple());
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create");
    let (base, _) = admin_url.rsplit_once('/').expect("a database URL ends in /name");
    (format!("{base}/{name}"), name)
}

fn arcade(database: &str, prefix: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env("DATABASE_URL", database)
        .env("REDIS_URL", env("REDIS_URL"))
        .env("ARCADE_PREFIX", prefix)
        .stdin(Stdio::null());
    command
}

fn project(database: &str, prefix: &str) -> Child {
    let mut child = arcade(database, prefix, &["project"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the projection process");
    let stdout = child.stdout.take().expect("piped stdout");
    let first = BufReader::new(stdout).lines().next();
    assert!(matches!(&first, Some(Ok(line)) if line == "projecting"), "did not start: {first:?}");
    child
}

fn kill(mut child: Child) {
    child.kill().expect("SIGKILL the projection process");
    child.wait().expect("reap it");
}

const BOARD: &str = "projection.arcade_leaderboard";
const SESSIONS: &str = "projection.arcade_sessions";

async fn checkpoint(store: &RedisReadStore, name: &str) -> Position {
    store.checkpoints().load(name).await.expect("load the checkpoint")
}

async fn caught_up(store: &RedisReadStore, name: &str, head: Position) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while checkpoint(store, name).await < head {
        assert!(Instant::now() < deadline, "`{name}` did not reach {head} in 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything the two read models answer, for comparison.
async fn snapshot(
    sessions: &RedisReadStore,
    board: &RedisReadStore,
    players: u64,
) -> (Vec<(String, f64)>, i64, BTreeSet<(String, String)>) {
    let top = board.top(POINTS, 100_000).await.expect("the leaderboard");
    let games = board.counter(GAMES).await.expect("the games");
    let mut open = BTreeSet::new();
    for id in 1..=players {
        let player = format!("p{id}");
        if let Some(session) = sessions.get::<Session>(&session_key(&player)).await.expect("get") {
            open.insert((player, session.device));
        }
    }
    (top, games, open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_killed_mid_batch_restarted_and_redelivered_equals_a_rebuild() {
    const PLAYERS: u64 = 1200;
    let (url, _name) = database().await;
    let output =
        arcade(&url, "unused", &["play", "1", &PLAYERS.to_string()]).output().expect("play");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let store = PostgresEventStore::connect(&url).await.expect("connect to the events");
    let log = store.read_all(Position::START, usize::MAX).await.expect("read the log");
    let head = log.last().expect("events were written").position;
    let (live, rebuilt) = (prefix(), prefix());
    let (sessions, board) = read_models(&env("REDIS_URL"), &live).await.expect("Redis");

    // Killed without warning once the leaderboard has committed a batch, while later ones run.
    let child = project(&url, &live);
    let deadline = Instant::now() + Duration::from_secs(60);
    while checkpoint(&board, BOARD).await == Position::START {
        assert!(Instant::now() < deadline, "no batch committed in 60 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    kill(child);
    let at_kill = checkpoint(&board, BOARD).await;
    assert!(at_kill < head, "the kill came after the projection finished: nothing interrupted");
    let scored = log
        .iter()
        .filter(|event| event.position <= at_kill && event.name == "player.scored")
        .count();
    let games = board.counter(GAMES).await.expect("the games");
    assert_eq!(games, i64::try_from(scored).unwrap(), "exactly the games up to the checkpoint");

    // Restarted, it carries on from its checkpoints.
    let child = project(&url, &live);
    caught_up(&board, BOARD, head).await;
    caught_up(&sessions, SESSIONS, head).await;
    kill(child);

    // The whole log again, as a bus would redeliver it (no checkpoint): the guards absorb it.
    let before = snapshot(&sessions, &board, PLAYERS).await;
    let mut again = ProjectionRunner::new(Leaderboard, board.clone());
    let mut sessions_again = ProjectionRunner::new(Sessions, sessions.clone());
    for batch in log.chunks(500) {
        again.handle(batch).await.expect("redeliver to the leaderboard");
        sessions_again.handle(batch).await.expect("redeliver to the sessions");
    }
    assert_eq!(snapshot(&sessions, &board, PLAYERS).await, before, "a redelivery counts once");

    // A rebuild from scratch under another prefix.
    let child = project(&url, &rebuilt);
    let (rebuilt_sessions, rebuilt_board) =
        read_models(&env("REDIS_URL"), &rebuilt).await.expect("Redis");
    caught_up(&rebuilt_board, BOARD, head).await;
    caught_up(&rebuilt_sessions, SESSIONS, head).await;
    kill(child);
    let from_scratch = snapshot(&rebuilt_sessions, &rebuilt_board, PLAYERS).await;
    assert_eq!(before, from_scratch, "the restarted read models equal a rebuild");
    assert_eq!(before.1, i64::try_from(PLAYERS * 3).unwrap());
    assert_eq!(before.2.len() as u64, PLAYERS / 2, "the odd players' sessions are open");

    for sessions in [&sessions, &rebuilt_sessions] {
        sessions.clear(Scope::of::<Sessions>()).await.expect("remove the test's keys");
    }
    for board in [&board, &rebuilt_board] {
        board.clear(Scope::of::<Leaderboard>()).await.expect("remove the test's keys");
    }
    store.pool().close().await;
}
