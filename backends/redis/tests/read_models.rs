//! Read models on Redis, against a real server (`REDIS_URL`): the read store passes the suite
//! the in-memory and PostgreSQL ones pass; redelivered events count once; values expire;
//! leaderboards; a refused batch changes nothing; hostile keys are only keys; dead letters
//! replayed past the guards; a projection hosted end to end.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use composable::checkpoint::CheckpointStore;
use composable::consumer::{Checkpoint, Saved};
use composable::host::App;
use composable::projection::{DeadLetter, ReadStore, Scope};
use composable::service::ServiceState;

/// The projection the batches here write for.
const SCOPE: Scope = Scope::new("test", 1);
use composable::{
    AggregateRunner, EventMetadata, InMemoryEventStore, Position, RecordedEvent, StreamId, Version,
    aggregate, apply, command, event, project, projection,
};
use composable_redis::{RedisBatch, RedisReadError, RedisReadStore};
use serde::{Deserialize, Serialize};

/// Numbers under their key, written with `set` and read with `get`.
struct Values(RedisReadStore);

impl composable_conformance::read_store::Fixture for Values {
    type Store = RedisReadStore;

    fn store(&self) -> &RedisReadStore {
        &self.0
    }

    async fn write(&self, batch: &mut RedisBatch, key: &str, value: u64) {
        batch.set(key, &value).expect("queue a value");
    }

    async fn read(&self, key: &str) -> Option<u64> {
        self.0.get(key).await.expect("read a value")
    }
}

mod conformance {
    use super::*;

    composable_conformance::read_store_conformance!(|| async { Values(common::store().await) });
    composable_conformance::stream_guards_conformance!(|| async { Values(common::store().await) });

    mod checkpoints {
        use super::*;

        composable_conformance::checkpoint_conformance!(|| async {
            common::store().await.checkpoints()
        });
    }
}

/// An event of stream `player-{player}` at `position`, as the log would deliver it.
fn recorded(player: &str, position: Position) -> RecordedEvent {
    let now = Utc::now();
    RecordedEvent {
        position,
        stream_id: StreamId::new("player", player).expect("a stream id"),
        stream_version: Version(position.sequence()),
        event_id: uuid::Uuid::now_v7(),
        name: "game.scored".to_owned(),
        version: 1,
        format: "bincode2".to_owned(),
        payload: Vec::new(),
        metadata: EventMetadata::new_flow(now),
        recorded_at: now,
    }
}

/// What a scoring projection does with each event: two increments of one counter (both must
/// count), a leaderboard increment, a hash counter and a last-seen value.
fn score(batch: &mut RedisBatch, events: &[RecordedEvent]) {
    for event in events {
        RedisReadStore::applying(batch, event);
        let player = event.stream_id.id();
        batch.incr_by("games", 1).expect("queue");
        batch.incr_by("games", 1).expect("queue");
        batch.zincr_by("points", player, 10.0).expect("queue");
        batch.hincr_by("games_by_player", player, 1).expect("queue");
        batch.set("last", &event.position.to_string()).expect("queue");
    }
}

async fn commit_batch(store: &RedisReadStore, events: &[RecordedEvent]) {
    let mut batch = store.begin(SCOPE).await.expect("begin");
    score(&mut batch, events);
    store.commit_batch(batch).await.expect("commit a batch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_events_count_once() {
    let store = common::store().await;
    let events = [
        recorded("ada", Position::new(1, 1)),
        recorded("bob", Position::new(1, 2)),
        recorded("ada", Position::new(2, 1)),
    ];
    commit_batch(&store, &events).await;
    commit_batch(&store, &events).await; // the bus delivers the whole batch again
    commit_batch(&store, &events[1..2]).await; // and one of its events once more
    assert_eq!(store.counter("games").await.unwrap(), 6, "two per event, once per event");
    assert_eq!(store.score("points", "ada").await.unwrap(), Some(20.0));
    assert_eq!(store.score("points", "bob").await.unwrap(), Some(10.0));
    assert_eq!(
        store.hcounters("games_by_player").await.unwrap(),
        [("ada".to_owned(), 2), ("bob".to_owned(), 1)]
    );
    assert_eq!(store.hcounter("games_by_player", "ada").await.unwrap(), 2);
    assert_eq!(store.get::<String>("last").await.unwrap().as_deref(), Some("2.1"));

    // A batch straddling what was applied and what was not: only the new events count.
    let later = [recorded("bob", Position::new(1, 2)), recorded("cy", Position::new(3, 1))];
    commit_batch(&store, &later).await;
    assert_eq!(store.counter("games").await.unwrap(), 8);
    assert_eq!(store.score("points", "cy").await.unwrap(), Some(10.0));
    assert_eq!(store.score("points", "bob").await.unwrap(), Some(10.0));
    assert_eq!(store.get::<String>("last").await.unwrap().as_deref(), Some("3.1"));

    // Operations queued without a position are applied every time.
    for _ in 0..2 {
        let mut batch = store.begin(SCOPE).await.unwrap();
        batch.incr_by("unguarded", 1).unwrap();
        store.commit_batch(batch).await.unwrap();
    }
    assert_eq!(store.counter("unguarded").await.unwrap(), 2);
    assert_eq!(store.counter("never-written").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_positions_are_guarded_too() {
    let store = common::store().await;
    let last = Position::new(u64::MAX, u64::MAX);
    let events = [recorded("ada", Position::new(u64::MAX, u64::MAX - 1)), recorded("ada", last)];
    commit_batch(&store, &events).await;
    commit_batch(&store, &events).await;
    assert_eq!(store.counter("games").await.unwrap(), 4);
    let mut batch = store.begin(SCOPE).await.unwrap();
    batch.set("k", &1u64).unwrap();
    let at = Checkpoint { name: "projection.max", after: Position::START, to: last };
    assert_eq!(store.commit(batch, at).await.unwrap(), Saved::ByHandler);
    assert_eq!(store.checkpoints().load("projection.max").await.unwrap(), last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_with_a_ttl_expires() {
    let store = common::store().await;
    let mut batch = store.begin(SCOPE).await.unwrap();
    batch.set_with_ttl("session", &"ada".to_owned(), Duration::from_secs(1)).unwrap();
    batch.set("forever", &1u8).unwrap();
    store.commit_batch(batch).await.unwrap();

    let ttl = store.ttl("session").await.unwrap().expect("a TTL");
    assert!(ttl > Duration::ZERO && ttl <= Duration::from_secs(1), "{ttl:?}");
    assert_eq!(store.ttl("forever").await.unwrap(), None, "no TTL");
    assert_eq!(store.ttl("missing").await.unwrap(), None, "no key");
    assert_eq!(store.get::<String>("session").await.unwrap().as_deref(), Some("ada"));

    let deadline = Instant::now() + Duration::from_secs(10);
    while store.exists("session").await.unwrap() {
        assert!(Instant::now() < deadline, "still there 10 s after a TTL of 1 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.get::<String>("session").await.unwrap(), None);
    assert_eq!(store.ttl("session").await.unwrap(), None);
    assert_eq!(store.get::<u8>("forever").await.unwrap(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaderboard_lists_the_highest_first() {
    let store = common::store().await;
    let mut batch = store.begin(SCOPE).await.unwrap();
    for (player, points) in [("ada", 30.0), ("bob", 12.5), ("cy", 99.0), ("dee", -4.0)] {
        batch.zadd("board", player, points).unwrap();
    }
    batch.zincr_by("board", "bob", 100.0).unwrap();
    batch.zincr_by("board", "eve", 0.25).unwrap();
    store.commit_batch(batch).await.unwrap();

    assert_eq!(
        store.top("board", 3).await.unwrap(),
        [("bob".to_owned(), 112.5), ("cy".to_owned(), 99.0), ("ada".to_owned(), 30.0)]
    );
    let all = store.top("board", 100).await.unwrap();
    let names: Vec<&str> = all.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["bob", "cy", "ada", "eve", "dee"]);
    assert_eq!(store.top("board", 0).await.unwrap(), []);
    assert_eq!(store.top("no-board", 5).await.unwrap(), []);
    assert_eq!(store.score("board", "dee").await.unwrap(), Some(-4.0));
    assert_eq!(store.score("board", "zed").await.unwrap(), None);

    let mut batch = store.begin(SCOPE).await.unwrap();
    assert!(matches!(
        batch.zincr_by("board", "ada", f64::NAN),
        Err(RedisReadError::InvalidScore { .. })
    ));
    assert!(matches!(
        batch.zadd("board", "ada", f64::INFINITY),
        Err(RedisReadError::InvalidScore { .. })
    ));
    assert!(batch.is_empty(), "a refused operation is not queued");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
    visits: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_hold_typed_fields_in_field_order() {
    let store = common::store().await;
    let mut batch = store.begin(SCOPE).await.unwrap();
    for (id, visits) in [("u2", 2), ("u10", 10), ("u1", 1)] {
        batch.hset("profiles", id, &Profile { name: id.to_uppercase(), visits }).unwrap();
    }
    batch.hdel("profiles", "u10").unwrap();
    batch.delete("gone").unwrap();
    store.commit_batch(batch).await.unwrap();

    let all: Vec<(String, Profile)> = store.hgetall("profiles").await.unwrap();
    let ids: Vec<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["u1", "u2"]);
    assert_eq!(
        store.hget::<Profile>("profiles", "u2").await.unwrap(),
        Some(Profile { name: "U2".into(), visits: 2 })
    );
    assert_eq!(store.hget::<Profile>("profiles", "u10").await.unwrap(), None);
    assert!(store.hgetall::<Profile>("none").await.unwrap().is_empty());
    assert!(matches!(store.hget::<u64>("profiles", "u1").await, Err(RedisReadError::Codec { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_changes_nothing() {
    let store = common::store().await;
    let mut batch = store.begin(SCOPE).await.unwrap();
    batch.set("name", &"ada".to_owned()).unwrap();
    batch.hset("profile", "name", &"ada".to_owned()).unwrap();
    batch.incr_by("near-the-end", 8_999_999_999_999_999_000).unwrap();
    let at =
        Checkpoint { name: "projection.refused", after: Position::START, to: Position::new(1, 1) };
    assert_eq!(store.commit(batch, at).await.unwrap(), Saved::ByHandler);

    for (refused, operation) in [
        (
            Box::new(|b: &mut RedisBatch| b.incr_by("name", 1))
                as Box<dyn Fn(&mut RedisBatch) -> Result<(), RedisReadError>>,
            "incr_by",
        ),
        (Box::new(|b: &mut RedisBatch| b.hincr_by("profile", "name", 1)), "hincr_by"),
        (Box::new(|b: &mut RedisBatch| b.zadd("profile", "ada", 1.0)), "zadd"),
        (Box::new(|b: &mut RedisBatch| b.hset("name", "f", &1u8)), "hset"),
        (Box::new(|b: &mut RedisBatch| b.incr_by("near-the-end", 1_000)), "incr_by"),
        // Within the batch: a value set first, then counted.
        (
            Box::new(|b: &mut RedisBatch| {
                b.set("fresh-value", &"x".to_owned())?;
                b.incr_by("fresh-value", 1)
            }),
            "incr_by",
        ),
    ] {
        let mut batch = store.begin(SCOPE).await.unwrap();
        RedisReadStore::applying(&mut batch, &recorded("ada", Position::new(2, 1)));
        batch.incr_by("counted", 1).unwrap();
        batch.zincr_by("board", "ada", 1.0).unwrap();
        refused(&mut batch).unwrap();
        batch.set("after", &1u8).unwrap();
        let at = Checkpoint {
            name: "projection.refused",
            after: Position::new(1, 1),
            to: Position::new(2, 1),
        };
        match store.commit(batch, at).await {
            Err(RedisReadError::Conflict { operation: refused_op, .. }) => {
                assert_eq!(refused_op, operation);
            }
            other => panic!("expected a conflict from {operation}, got {other:?}"),
        }
        assert_eq!(store.counter("counted").await.unwrap(), 0, "nothing before it");
        assert_eq!(store.top("board", 1).await.unwrap(), []);
        assert!(!store.exists("after").await.unwrap(), "nothing after it");
        assert!(!store.exists("fresh-value").await.unwrap());
        assert_eq!(
            store.checkpoints().load("projection.refused").await.unwrap(),
            Position::new(1, 1),
            "the checkpoint stays"
        );
    }
    assert_eq!(store.get::<String>("name").await.unwrap().as_deref(), Some("ada"));
    assert!(matches!(store.counter("name").await, Err(RedisReadError::Corrupt { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_are_only_keys_and_prefixes_stay_apart() {
    let store = common::store().await;
    let neighbour = common::store().await;
    let mut batch = neighbour.begin(SCOPE).await.unwrap();
    batch.set("canary", &7u8).unwrap();
    neighbour.commit_batch(batch).await.unwrap();

    let hostile = [
        "k'; DROP TABLE x; --",
        "\"]]) redis.call('FLUSHALL') --[[",
        "line\nbreak\0nul",
        "*",
        "\u{1F600}:{tag}",
    ];
    let mut batch = store.begin(SCOPE).await.unwrap();
    RedisReadStore::applying(&mut batch, &recorded("ada", Position::new(1, 1)));
    for (n, key) in (1i64..).zip(hostile) {
        batch.set(key, &n).unwrap();
        batch.incr_by(&format!("count {key}"), n).unwrap();
        batch.zadd("board", key, n as f64).unwrap();
        batch.hset("hash", key, &n).unwrap();
    }
    store.commit_batch(batch).await.unwrap();
    for (n, key) in (1i64..).zip(hostile) {
        assert_eq!(store.get::<i64>(key).await.unwrap(), Some(n), "{key:?}");
        assert_eq!(store.counter(&format!("count {key}")).await.unwrap(), n);
        assert_eq!(store.score("board", key).await.unwrap(), Some(n as f64));
        assert_eq!(store.hget::<i64>("hash", key).await.unwrap(), Some(n));
    }
    assert_eq!(neighbour.get::<u8>("canary").await.unwrap(), Some(7), "another prefix untouched");
    assert!(!neighbour.exists("*").await.unwrap());

    // Reserved and empty keys, bad prefixes and checkpoint names are typed errors.
    let mut batch = store.begin(SCOPE).await.unwrap();
    for bad in ["", "__applied", "__checkpoint:projection.x"] {
        assert!(matches!(batch.set(bad, &1u8), Err(RedisReadError::InvalidKey { .. })), "{bad:?}");
        assert!(matches!(store.get::<u8>(bad).await, Err(RedisReadError::InvalidKey { .. })));
    }
    for bad in ["", "Upper", "a b", "a{b}", &"p".repeat(65)] {
        assert!(matches!(
            RedisReadStore::new(store.connection().clone(), bad),
            Err(RedisReadError::InvalidPrefix(_))
        ));
    }
    assert!(store.checkpoints().load("bad\nname").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_guard_or_checkpoint_is_a_typed_error_and_changes_nothing() {
    let store = common::store().await;
    let mut connection = store.connection().clone();
    let guards = format!("{}:v1:__applied", store.prefix());
    redis::cmd("HSET")
        .arg(&guards)
        .arg("k:games")
        .arg("not a position")
        .exec_async(&mut connection)
        .await
        .unwrap();
    let mut batch = store.begin(SCOPE).await.unwrap();
    RedisReadStore::applying(&mut batch, &recorded("ada", Position::new(1, 1)));
    batch.set("before", &1u8).unwrap();
    batch.incr_by("games", 1).unwrap();
    assert!(matches!(store.commit_batch(batch).await, Err(RedisReadError::Corrupt { .. })));
    assert!(!store.exists("before").await.unwrap());

    let checkpoint = format!("{}:__checkpoint:projection.corrupt", store.prefix());
    redis::cmd("SET").arg(&checkpoint).arg("7.1").exec_async(&mut connection).await.unwrap();
    let batch = store.begin(SCOPE).await.unwrap();
    let at =
        Checkpoint { name: "projection.corrupt", after: Position::START, to: Position::new(1, 1) };
    assert!(matches!(store.commit(batch, at).await, Err(RedisReadError::Corrupt { .. })));
    assert!(matches!(
        store.checkpoints().load("projection.corrupt").await,
        Err(composable::checkpoint::CheckpointError::Corrupt { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_letter_applies_past_guards_other_streams_moved() {
    let store = common::store().await;
    let name = "projection.scores";
    let parked = recorded("ada", Position::new(3, 1));
    let mut batch = store.begin(SCOPE).await.unwrap();
    RedisReadStore::park(
        &mut batch,
        DeadLetter {
            projection: name.to_owned(),
            event: parked.clone(),
            reason: "boom".into(),
            parked_at: Utc::now(),
        },
    )
    .await
    .unwrap();
    // A later event of another stream moves the guard of the shared counter past it.
    score(&mut batch, &[recorded("bob", Position::new(5, 1))]);
    store.commit_batch(batch).await.unwrap();
    assert_eq!(store.counter("games").await.unwrap(), 2);

    let mut replay = store.begin(SCOPE).await.unwrap();
    assert!(RedisReadStore::unpark(&mut replay, name, parked.event_id).await.unwrap());
    score(&mut replay, std::slice::from_ref(&parked));
    store.commit_batch(replay).await.unwrap();
    assert_eq!(store.counter("games").await.unwrap(), 4, "the replayed event counts");
    assert_eq!(store.score("points", "ada").await.unwrap(), Some(10.0));
    assert_eq!(
        store.get::<String>("last").await.unwrap().as_deref(),
        Some("3.1"),
        "a replay applies what it replays"
    );
    assert!(store.dead_letters(name).await.unwrap().is_empty());
    assert!(store.parked_streams(name).await.unwrap().is_empty());

    // The guards kept the higher position: bob's event delivered again still counts once.
    commit_batch(&store, &[recorded("bob", Position::new(5, 1))]).await;
    assert_eq!(store.counter("games").await.unwrap(), 4);

    // Two replays of one letter: the second applies nothing.
    let mut batch = store.begin(SCOPE).await.unwrap();
    let letter = DeadLetter {
        projection: name.to_owned(),
        event: recorded("cy", Position::new(6, 1)),
        reason: "boom".into(),
        parked_at: Utc::now(),
    };
    RedisReadStore::park(&mut batch, letter.clone()).await.unwrap();
    store.commit_batch(batch).await.unwrap();
    let mut first = store.begin(SCOPE).await.unwrap();
    let mut second = store.begin(SCOPE).await.unwrap();
    assert!(RedisReadStore::unpark(&mut first, name, letter.event.event_id).await.unwrap());
    assert!(RedisReadStore::unpark(&mut second, name, letter.event.event_id).await.unwrap());
    score(&mut first, std::slice::from_ref(&letter.event));
    score(&mut second, std::slice::from_ref(&letter.event));
    store.commit_batch(first).await.unwrap();
    assert!(matches!(store.commit_batch(second).await, Err(RedisReadError::Replayed)));
    assert_eq!(store.counter("games").await.unwrap(), 6);
}

// A projection hosted end to end, fed by the in-memory event store.

#[event(name = "game.scored", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub player: String,
    pub points: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub player: String,
    pub points: u32,
}

#[derive(Debug, Default)]
pub struct Game;

#[aggregate(stream = "game")]
impl Game {
    #[command]
    fn score(&self, command: Score) -> Scored {
        Scored { player: command.player, points: command.points }
    }

    #[apply]
    fn scored(&mut self, _event: &Scored) {}
}

/// Points per player, games per player, and the games played.
struct Leaderboard;

#[projection(name = "leaderboard", store = RedisReadStore)]
impl Leaderboard {
    #[project]
    fn scored(&self, batch: &mut RedisBatch, event: &Scored) -> Result<(), RedisReadError> {
        batch.zincr_by("points", &event.player, f64::from(event.points))?;
        batch.hincr_by("games_by_player", &event.player, 1)?;
        batch.incr_by("games", 1)?;
        batch.set("last", &event.player)
    }
}

fn host(
    events: &InMemoryEventStore,
    games: &Arc<AggregateRunner<Game, InMemoryEventStore>>,
    read: &RedisReadStore,
) -> composable::host::RunningApp<InMemoryEventStore> {
    App::in_process("arcade", events.clone())
        .aggregate(games)
        .projection(Leaderboard, read.clone())
        .build()
        .expect("the wiring is complete")
        .start()
}

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_projection_keeps_a_leaderboard_once_per_event() {
    let events = InMemoryEventStore::new();
    let games = Arc::new(AggregateRunner::<Game, _>::new(events.clone(), ()));
    let read = common::store().await;
    let score = |player: &str, points| Score { player: player.into(), points };

    let running = host(&events, &games, &read);
    for (game, player, points) in [("g1", "ada", 30), ("g2", "bob", 12), ("g3", "ada", 5)] {
        games.execute(game, score(player, points)).await.unwrap();
    }
    let token = games.execute("g4", score("cy", 50)).await.unwrap().token.unwrap();
    running.service("projection.leaderboard").unwrap().reached(token, WAIT).await.unwrap();
    assert_eq!(
        read.top("points", 10).await.unwrap(),
        [("cy".to_owned(), 50.0), ("ada".to_owned(), 35.0), ("bob".to_owned(), 12.0)]
    );
    assert_eq!(read.counter("games").await.unwrap(), 4);
    assert_eq!(read.get::<String>("last").await.unwrap().as_deref(), Some("cy"));
    running.stop().await.unwrap();

    // Events while no projection runs, then a new process over the same read model: it
    // resumes from the checkpoint kept in Redis, and nothing counts twice.
    for points in 1..=20 {
        games.execute("g5", score("bob", points)).await.unwrap();
    }
    let last = games.execute("g6", score("dee", 1)).await.unwrap().token.unwrap();
    let restarted = host(&events, &games, &read);
    restarted.service("projection.leaderboard").unwrap().reached(last, WAIT).await.unwrap();
    assert_eq!(read.counter("games").await.unwrap(), 4 + 21);
    assert_eq!(read.score("points", "bob").await.unwrap(), Some(12.0 + 210.0));
    assert_eq!(
        read.hcounters("games_by_player").await.unwrap(),
        [
            ("ada".to_owned(), 2),
            ("bob".to_owned(), 21),
            ("cy".to_owned(), 1),
            ("dee".to_owned(), 1)
        ]
    );
    assert_ne!(
        read.checkpoints().load("projection.leaderboard").await.unwrap(),
        Position::START,
        "the checkpoint is in Redis"
    );
    restarted.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_keeps_one_projection_and_reads_follow_its_serving_version() {
    let store = common::store().await;
    let mut batch = store.begin(SCOPE).await.unwrap();
    batch.zadd("board", "ada", 3.0).unwrap();
    batch.hset("profile", "name", "Ada").unwrap();
    store.commit_batch(batch).await.unwrap();
    let other = Scope::new("another", 1);
    match store.begin(other).await {
        Err(RedisReadError::SharedPrefix { owner, projection, .. }) => {
            assert_eq!((owner.as_str(), projection.as_str()), ("test", "another"));
        }
        outcome => panic!("another projection on the prefix: {outcome:?}"),
    }

    // Version 2 fills its own keys; every kind of read follows the switch.
    let v2 = Scope::new("test", 2);
    let mut batch = store.begin(v2).await.unwrap();
    batch.zadd("board", "bob", 5.0).unwrap();
    batch.hset("profile", "name", "Bob").unwrap();
    store.commit_batch(batch).await.unwrap();
    assert_eq!(store.top("board", 5).await.unwrap(), vec![("ada".to_owned(), 3.0)]);
    assert_eq!(store.active_version("test").await.unwrap(), Some(1));
    assert_eq!(store.active_version("another").await.unwrap(), None);
    assert_eq!(store.activate(v2).await.unwrap(), Some(1));
    assert_eq!(store.top("board", 5).await.unwrap(), vec![("bob".to_owned(), 5.0)]);
    assert_eq!(store.hget::<String>("profile", "name").await.unwrap().as_deref(), Some("Bob"));
    let mut connection = store.connection().clone();
    let old: i64 = redis::cmd("EXISTS")
        .arg(store.redis_key(1, "board").unwrap())
        .arg(store.redis_key(1, "profile").unwrap())
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(old, 0, "version 1's keys are deleted");

    // A corrupt serving version is a typed error, not a guess.
    let serving = format!("{}:__serving", store.prefix());
    redis::cmd("SET").arg(&serving).arg("two").exec_async(&mut connection).await.unwrap();
    assert!(matches!(store.begin(v2).await, Err(RedisReadError::Corrupt { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_redis_refuses_stops_the_projection_instead_of_retrying_forever() {
    let events = InMemoryEventStore::new();
    let games = Arc::new(AggregateRunner::<Game, _>::new(events.clone(), ()));
    let read = common::store().await;
    // `games` holds a hash, so the projection's counter on it can never be applied.
    let mut connection = read.connection().clone();
    redis::cmd("HSET")
        .arg(read.redis_key(1, "games").unwrap())
        .arg("x")
        .arg("1")
        .exec_async(&mut connection)
        .await
        .unwrap();
    let running = host(&events, &games, &read);
    games.execute("g1", Score { player: "ada".into(), points: 3 }).await.unwrap();
    let failed = tokio::time::timeout(WAIT, running.failure()).await.expect("it stops");
    assert_eq!(failed.name, "projection.leaderboard");
    let ServiceState::Failed(error) = &failed.health.state else {
        panic!("{:?}", failed.health.state)
    };
    assert!(error.contains("not a counter"), "{error}");
    assert_eq!(read.top("points", 10).await.unwrap(), [], "nothing of the batch applied");
    running.stop().await.unwrap_err();
}

/// From the bus, streams interleave in any order and deliveries come twice: the leaderboard's
/// `games` counter, which every stream adds to, must count each event once — what the stream
/// guards do, where a guard by position per key would skip the events a later position of
/// another stream passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_following_the_bus_counts_each_event_once_across_interleaved_streams() {
    use composable::bus::{BusMessage, EventBus, InMemoryBus};
    use composable::projection::ProjectionRunner;
    use composable::{EventStore, service};

    let events = InMemoryEventStore::new();
    let games = Arc::new(AggregateRunner::<Game, _>::new(events.clone(), ()));
    let read = common::store().await;
    let bus = InMemoryBus::new();
    let score = |player: &str, points| Score { player: player.into(), points };
    games.execute("g1", score("ada", 1)).await.unwrap();
    let mut handle = service::spawn(ProjectionRunner::new(Leaderboard, read.clone()).from_bus(
        events.clone(),
        bus.clone(),
        ["game-events"],
    ));
    // Caught up with the log (the first event): what comes next comes from the bus only.
    assert!(handle.wait_until(|health| health.caught_up).await.caught_up);

    for (game, player, points) in
        [("g2", "bob", 10), ("g3", "cy", 100), ("g2", "bob", 1000), ("g4", "dee", 10_000)]
    {
        games.execute(game, score(player, points)).await.unwrap();
    }
    let log = events.read_all(Position::START, 100).await.unwrap();
    assert_eq!(log.len(), 5);
    // Newest streams first, the first event (applied from the log) again, g2's twice — each
    // stream's events in their order, as the bus keeps them.
    let order = [4, 2, 1, 0, 3, 1, 3, 2];
    let messages = order.iter().map(|index| BusMessage::from_event(&log[*index])).collect();
    bus.publish(messages).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while read.score("points", "dee").await.unwrap().is_none()
        || read.score("points", "bob").await.unwrap() < Some(1010.0)
        || read.score("points", "cy").await.unwrap().is_none()
    {
        assert!(Instant::now() < deadline, "not applied in {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(read.counter("games").await.unwrap(), 5, "each event counted once");
    assert_eq!(
        read.top("points", 10).await.unwrap(),
        [
            ("dee".to_owned(), 10_000.0),
            ("bob".to_owned(), 1010.0),
            ("cy".to_owned(), 100.0),
            ("ada".to_owned(), 1.0)
        ]
    );
    handle.stop().await.unwrap();
}
