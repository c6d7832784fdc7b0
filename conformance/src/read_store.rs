//! The read store suite: what the projection runner relies on from a
//! [`ReadStore`] — a batch is invisible until committed, commits together with the
//! projection's checkpoint, and only from where that checkpoint was when the batch began.
//!
//! The suite writes and reads through a [`Fixture`], which knows how to put a number under a
//! key in the store's batch and read it back as committed:
//!
//! ```ignore
//! composable_conformance::read_store_conformance!(|| async { MyFixture::new().await });
//! ```

use std::future::Future;

use composable::checkpoint::CheckpointStore;
use composable::consumer::{Checkpoint, Saved};
use composable::projection::{DeadLetter, ReadStore, Scope, StreamGuards};
use composable::stream::{Position, StreamId, Version};
use composable::{EventMetadata, RecordedEvent};

use chrono::{DateTime, SubsecRound, Utc};

/// A read store under test, and how to write and read a value in it.
pub trait Fixture: Send + Sync {
    /// The store.
    type Store: ReadStore;

    /// The store, fresh: no checkpoints, no values.
    fn store(&self) -> &Self::Store;

    /// Writes `value` under `key` in `batch`.
    fn write(
        &self,
        batch: &mut <Self::Store as ReadStore>::Batch,
        key: &str,
        value: u64,
    ) -> impl Future<Output = ()> + Send;

    /// The committed value under `key`.
    fn read(&self, key: &str) -> impl Future<Output = Option<u64>> + Send;
}

/// Expands to one `#[tokio::test]` per read store check, each calling it with the given factory
/// (`impl Fn() -> impl Future<Output = impl Fixture>`).
#[macro_export]
macro_rules! read_store_conformance {
    ($factory:expr) => {
        $crate::read_store_conformance!(@tests $factory;
            a_batch_is_invisible_until_committed_with_its_checkpoint,
            a_batch_from_a_moved_checkpoint_changes_nothing,
            racing_batches_from_one_checkpoint_have_one_winner,
            a_batch_without_a_checkpoint_moves_nothing,
            a_dropped_batch_changes_nothing,
            parked_events_are_kept_whole_by_stream_and_taken_once,
            a_new_version_builds_apart_and_takes_over_when_activated,
            an_older_version_is_retired_once_a_newer_one_serves,
            clearing_a_version_empties_it_for_a_rebuild,
        );
    };
    (@tests $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::read_store::$check($factory).await;
            }
        )*
    };
}

/// Expands to one `#[tokio::test]` per check of a store's stream guards
/// ([`StreamGuards`]: what a projection that follows the bus relies on), for stores that keep
/// them; used beside [`read_store_conformance!`].
#[macro_export]
macro_rules! stream_guards_conformance {
    ($factory:expr) => {
        $crate::read_store_conformance!(@tests $factory;
            a_guarded_batch_applies_only_from_the_version_it_read,
            racing_guarded_batches_of_one_stream_have_one_winner,
            guards_move_with_the_checkpoint_and_are_kept_per_version,
        );
    };
}

/// The projection under test, version 1 and 2.
const V1: Scope = Scope::new("conformance", 1);
const V2: Scope = Scope::new("conformance", 2);

/// Version 1's checkpoint name.
const NAME: &str = "projection.conformance";
/// Version 2's.
const NAME_V2: &str = "projection.conformance.v2";

fn at(after: Position, to: Position) -> Checkpoint<'static> {
    Checkpoint { name: NAME, after, to }
}

fn at_v2(after: Position, to: Position) -> Checkpoint<'static> {
    Checkpoint { name: NAME_V2, after, to }
}

fn position(sequence: u64) -> Position {
    Position::new(1, sequence)
}

async fn begin<X: Fixture>(fixture: &X) -> <X::Store as ReadStore>::Batch {
    begin_for(fixture, V1).await
}

async fn begin_for<X: Fixture>(fixture: &X, scope: Scope) -> <X::Store as ReadStore>::Batch {
    fixture.store().begin(scope).await.unwrap_or_else(|error| panic!("begin a batch: {error}"))
}

/// Writes `writes` in one batch of `scope` and commits it at `at`.
async fn write_and_commit<X: Fixture>(
    fixture: &X,
    scope: Scope,
    writes: &[(&str, u64)],
    at: Checkpoint<'_>,
) -> Saved {
    let mut batch = begin_for(fixture, scope).await;
    for (key, value) in writes {
        fixture.write(&mut batch, key, *value).await;
    }
    commit(fixture, batch, at).await
}

async fn commit<X: Fixture>(
    fixture: &X,
    batch: <X::Store as ReadStore>::Batch,
    at: Checkpoint<'_>,
) -> Saved {
    fixture.store().commit(batch, at).await.unwrap_or_else(|error| panic!("commit: {error}"))
}

async fn checkpoint<X: Fixture>(fixture: &X) -> Position {
    checkpoint_of(fixture, NAME).await
}

async fn checkpoint_of<X: Fixture>(fixture: &X, name: &str) -> Position {
    fixture
        .store()
        .checkpoints()
        .load(name)
        .await
        .unwrap_or_else(|error| panic!("load checkpoint `{name}`: {error}"))
}

async fn active<X: Fixture>(fixture: &X) -> Option<u32> {
    fixture
        .store()
        .active_version(V1.projection)
        .await
        .unwrap_or_else(|error| panic!("read the active version: {error}"))
}

/// Nothing a batch writes is visible before it commits; once committed, its changes and the
/// checkpoint are there together.
pub async fn a_batch_is_invisible_until_committed_with_its_checkpoint<X, F, Fut>(factory: F)
where
    X: Fixture,
    F: Fn() -> Fut,
    Fut: Future<Output = X>,
{
    let fixture = factory().await;
    assert_eq!(checkpoint(&fixture).await, Position::START, "a new projection starts at 0");
    let mut batch = begin(&fixture).await;
    fixture.write(&mut batch, "k", 1).await;
    assert_eq!(fixture.read("k").await, None, "not visible before the commit");
    assert_eq!(commit(&fixture, batch, at(Position::START, position(3))).await, Saved::ByHandler);
    assert_eq!(fixture.read("k").await, Some(1));
    assert_eq!(checkpoint(&fixture).await, position(3));

    let saved = write_and_commit(&fixture, V1, &[("k", 2)], at(position(3), position(7))).await;
    assert_eq!(saved, Saved::ByHandler);
    assert_eq!(fixture.read("k").await, Some(2));
    assert_eq!(checkpoint(&fixture).await, position(7));
}

/// A batch begun at a checkpoint another process has since moved applies nothing: each event
/// takes effect once.
pub async fn a_batch_from_a_moved_checkpoint_changes_nothing<X, F, Fut>(factory: F)
where
    X: Fixture,
    F: Fn() -> Fut,
    Fut: Future<Output = X>,
{
    let fixture = factory().await;
    let first = write_and_commit(&fixture, V1, &[("k", 1)], at(Position::START, position(2)));
    assert_eq!(first.await, Saved::ByHandler);

    // The same batch again, from where it began: the checkpoint has moved.
    let again = [("k", 10), ("other", 10)];
    let saved = write_and_commit(&fixture, V1, &again, at(Position::START, position(2))).await;
    assert_eq!(saved, Saved::Moved);
    assert_eq!(fixture.read("k").await, Some(1), "the stale batch changed nothing");
    assert_eq!(fixture.read("other").await, None);

    // From an older position than the checkpoint's, too.
    let saved = write_and_commit(&fixture, V1, &[("k", 20)], at(position(1), position(5))).await;
    assert_eq!(saved, Saved::Moved);
    assert_eq!(fixture.read("k").await, Some(1));
    assert_eq!(checkpoint(&fixture).await, position(2));
}

/// Two processes committing the same batch at once: one applies it, the other is told the
/// checkpoint moved, and only the winner's changes are there.
pub async fn racing_batches_from_one_checkpoint_have_one_winner<X, F, Fut>(factory: F)
where
    X: Fixture,
    F: Fn() -> Fut,
    Fut: Future<Output = X>,
{
    let fixture = factory().await;
    for (round, after) in [(0, Position::START), (1, position(4))] {
        let mut a = begin(&fixture).await;
        let mut b = begin(&fixture).await;
        let (key_a, key_b) = (format!("a{round}"), format!("b{round}"));
        fixture.write(&mut a, &key_a, 1).await;
        fixture.write(&mut b, &key_b, 1).await;
        let to = position(4 * (round + 1));
        let (saved_a, saved_b) =
            futures::join!(commit(&fixture, a, at(after, to)), commit(&fixture, b, at(after, to)),);
        let winners = [saved_a, saved_b].iter().filter(|saved| **saved == Saved::ByHandler).count();
        assert_eq!(winners, 1, "round {round}: {saved_a:?}, {saved_b:?}");
        let applied = [fixture.read(&key_a).await, fixture.read(&key_b).await];
        let expected = if saved_a == Saved::ByHandler { [Some(1), None] } else { [None, Some(1)] };
        assert_eq!(applied, expected, "round {round}: only the winner's changes");
        assert_eq!(checkpoint(&fixture).await, to);
    }
}

/// `commit_batch` applies the changes and leaves the checkpoint where it is: what a projection
/// fed by the bus, which keeps its position in the broker, uses.
pub async fn a_batch_without_a_checkpoint_moves_nothing<X, F, Fut>(factory: F)
where
    X: Fixture,
    F: Fn() -> Fut,
    Fut: Future<Output = X>,
{
    let fixture = factory().await;
    let mut batch = begin(&fixture).await;
    fixture.write(&mut batch, "k", 5).await;
    let saved = fixture.store().commit_batch(batch).await;
    assert_eq!(saved.unwrap_or_else(|error| panic!("commit: {error}")), Saved::ByConsumer);
    assert_eq!(fixture.read("k").await, Some(5));
    assert_eq!(checkpoint(&fixture).await, Position::START);
}

/// A batch dropped without a commit (its handler failed, the process is stopping) leaves no
/// trace.
pub async fn a_dropped_batch_changes_nothing<X, F, Fut>(factory: F)
where
    X: Fixture,
    F: Fn() -> Fut,
    Fut: Future<Output = X>,
{
    let fixture = factory().await;
    let mut batch = begin(&fixture).await;
    fixture.write(&mut batch, "k", 5).await;
    drop(batch);
    assert_eq!(fixture.read("k").await, None);
    let saved = write_and_commit(&fixture, V1, &[("j", 1)], at(Position::START, position(1)));
    assert_eq!(saved.await, Saved::ByHandler);
    assert_eq!(fixture.read("k").await, None);
    assert_eq!(fixture.read("j").await, Some(1));
}

fn letter(stream: &str, sequence: u64, reason: &str) -> DeadLetter {
    // Whole microseconds: what every store keeps of a time.
    let now: DateTime<Utc> = Utc::now().trunc_subsecs(6);
    DeadLetter {
        projection: NAME.to_owned(),
        event: RecordedEvent {
            position: position(sequence),
            stream_id: StreamId::new("order", stream).unwrap_or_else(|error| panic!("{error}")),
            stream_version: Version(sequence),
            event_id: uuid::Uuid::now_v7(),
            name: "order.placed".to_owned(),
            version: 2,
            format: "bincode".to_owned(),
            payload: vec![0, 1, 2, 0xff],
            metadata: EventMetadata::caused_by(uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), now),
            recorded_at: now,
        },
        reason: format!("{reason} 'quoted'; -- \u{1F600}"),
        parked_at: now,
    }
}

/// Parked events are kept whole with their reason, committed with their batch, listed in log
/// order with their streams (which every batch begun later knows); a replay takes each one
/// once.
pub async fn parked_events_are_kept_whole_by_stream_and_taken_once<X, F, Fut>(factory: F)
where
    X: Fixture,
    F: Fn() -> Fut,
    Fut: Future<Output = X>,
{
    let fixture = factory().await;
    let store = fixture.store();
    let parked = |letters: &[DeadLetter]| letters.to_vec();
    let (late, early, other) =
        (letter("a", 9, "later"), letter("a", 4, "boom"), letter("b", 6, "x"));

    let mut batch = begin(&fixture).await;
    for letter in [&late, &early, &other] {
        X::Store::park(&mut batch, letter.clone()).await.unwrap_or_else(|error| panic!("{error}"));
    }
    assert!(
        store.dead_letters(NAME).await.unwrap_or_else(|error| panic!("{error}")).is_empty(),
        "not parked before the commit"
    );
    assert_eq!(commit(&fixture, batch, at(Position::START, position(9))).await, Saved::ByHandler);

    let letters = store.dead_letters(NAME).await.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(letters, parked(&[early.clone(), other.clone(), late.clone()]), "in log order");
    let streams = store.parked_streams(NAME).await.unwrap_or_else(|error| panic!("{error}"));
    let expected: Vec<&str> = vec!["order-a", "order-b"];
    assert_eq!(streams.iter().map(String::as_str).collect::<Vec<_>>(), expected);
    let next = begin(&fixture).await;
    let known: Vec<&str> = X::Store::parked(&next).iter().map(String::as_str).collect();
    assert_eq!(known, expected, "a batch begun after them knows the parked streams");
    drop(next);
    assert!(
        store
            .dead_letters("projection.other")
            .await
            .unwrap_or_else(|error| panic!("{error}"))
            .is_empty(),
        "by projection"
    );

    // A replay takes a letter out with its batch; a second one finds it gone.
    let mut replay = begin(&fixture).await;
    let taken = X::Store::unpark(&mut replay, NAME, other.event.event_id)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(taken);
    store.commit_batch(replay).await.unwrap_or_else(|error| panic!("{error}"));
    let mut again = begin(&fixture).await;
    let taken = X::Store::unpark(&mut again, NAME, other.event.event_id)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(!taken, "a letter is taken once");
    drop(again);
    let letters = store.dead_letters(NAME).await.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(letters, parked(&[early, late]));
    let streams = store.parked_streams(NAME).await.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(streams.iter().map(String::as_str).collect::<Vec<_>>(), ["order-a"]);
    let next = begin(&fixture).await;
    let known: Vec<&str> = X::Store::parked(&next).iter().map(String::as_str).collect();
    assert_eq!(known, ["order-a"], "and no longer a stream whose letters were replayed");
}

/// A new version writes apart from the active one: queries keep reading the old version until
/// the new one is activated, then read the new one, and the old one's values and checkpoint
/// are gone.
pub async fn a_new_version_builds_apart_and_takes_over_when_activated<X, F, Fut>(factory: F)
where
    X: Fixture,
    F: Fn() -> Fut,
    Fut: Future<Output = X>,
{
    let fixture = factory().await;
    assert_eq!(active(&fixture).await, None, "no version before the first batch");
    let saved =
        write_and_commit(&fixture, V1, &[("k", 1), ("old", 1)], at(Position::START, position(2)));
    assert_eq!(saved.await, Saved::ByHandler);
    assert_eq!(active(&fixture).await, Some(1), "the first version serves at once");

    let mut building = begin_for(&fixture, V2).await;
    assert_eq!(X::Store::serving(&building), 1, "version 1 serves while version 2 builds");
    fixture.write(&mut building, "k", 2).await;
    fixture.write(&mut building, "new", 2).await;
    let saved = commit(&fixture, building, at_v2(Position::START, position(2)));
    assert_eq!(saved.await, Saved::ByHandler);
    assert_eq!(fixture.read("k").await, Some(1), "queries read the active version");
    assert_eq!(fixture.read("new").await, None, "the new version is not served yet");
    assert_eq!(active(&fixture).await, Some(1));
    assert_eq!(
        checkpoint_of(&fixture, NAME_V2).await,
        position(2),
        "each version has its checkpoint"
    );

    let replaced =
        fixture.store().activate(V2).await.unwrap_or_else(|error| panic!("activate: {error}"));
    assert_eq!(replaced, Some(1));
    assert_eq!(active(&fixture).await, Some(2));
    assert_eq!(fixture.read("k").await, Some(2), "queries read the new version");
    assert_eq!(fixture.read("new").await, Some(2));
    assert_eq!(fixture.read("old").await, None, "only the new version's values");
    assert_eq!(
        checkpoint(&fixture).await,
        Position::START,
        "the old version's checkpoint is dropped"
    );

    // Activating again, or an older version, changes nothing.
    let again =
        fixture.store().activate(V2).await.unwrap_or_else(|error| panic!("activate: {error}"));
    assert_eq!(again, None);
    let older =
        fixture.store().activate(V1).await.unwrap_or_else(|error| panic!("activate: {error}"));
    assert_eq!(older, Some(2), "a newer version stays");
    assert_eq!(fixture.read("k").await, Some(2));
}

/// Once a newer version serves, a batch of an older one applies nothing and says so, with a
/// checkpoint or without.
pub async fn an_older_version_is_retired_once_a_newer_one_serves<X, F, Fut>(factory: F)
where
    X: Fixture,
    F: Fn() -> Fut,
    Fut: Future<Output = X>,
{
    let fixture = factory().await;
    let saved = write_and_commit(&fixture, V1, &[("k", 1)], at(Position::START, position(1)));
    assert_eq!(saved.await, Saved::ByHandler);
    // Of the old version, begun and committed while it still serves.
    let mut late = begin_for(&fixture, V1).await;
    assert_eq!(X::Store::serving(&late), 1);
    fixture.write(&mut late, "late", 1).await;
    let saved = write_and_commit(&fixture, V2, &[("k", 2)], at_v2(Position::START, position(1)));
    assert_eq!(saved.await, Saved::ByHandler);
    assert_eq!(commit(&fixture, late, at(position(1), position(2))).await, Saved::ByHandler);
    fixture.store().activate(V2).await.unwrap_or_else(|error| panic!("activate: {error}"));

    let mut retired = begin_for(&fixture, V1).await;
    assert_eq!(X::Store::serving(&retired), 2, "begun after the switch");
    fixture.write(&mut retired, "k", 10).await;
    assert_eq!(commit(&fixture, retired, at(Position::START, position(3))).await, Saved::Retired);
    let mut retired = begin_for(&fixture, V1).await;
    fixture.write(&mut retired, "k", 11).await;
    let saved =
        fixture.store().commit_batch(retired).await.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(saved, Saved::Retired);
    assert_eq!(fixture.read("k").await, Some(2));
    assert_eq!(fixture.read("late").await, None, "whatever the old version wrote is gone");
    assert_eq!(checkpoint(&fixture).await, Position::START, "and its checkpoint");
}

/// Clearing a version empties its values, checkpoint and dead letters, and it stays active:
/// a rebuild in place starts from there.
pub async fn clearing_a_version_empties_it_for_a_rebuild<X, F, Fut>(factory: F)
where
    X: Fixture,
    F: Fn() -> Fut,
    Fut: Future<Output = X>,
{
    let fixture = factory().await;
    let mut batch = begin(&fixture).await;
    fixture.write(&mut batch, "k", 1).await;
    X::Store::park(&mut batch, letter("a", 1, "boom"))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(commit(&fixture, batch, at(Position::START, position(4))).await, Saved::ByHandler);
    fixture.store().clear(V1).await.unwrap_or_else(|error| panic!("clear: {error}"));
    assert_eq!(fixture.read("k").await, None);
    assert_eq!(checkpoint(&fixture).await, Position::START);
    let letters =
        fixture.store().dead_letters(NAME).await.unwrap_or_else(|error| panic!("{error}"));
    assert!(letters.is_empty(), "{letters:?}");
    assert_eq!(active(&fixture).await, Some(1), "it still serves");
    let saved = write_and_commit(&fixture, V1, &[("k", 2)], at(Position::START, position(4)));
    assert_eq!(saved.await, Saved::ByHandler);
    assert_eq!(fixture.read("k").await, Some(2));
}

async fn applied<X>(fixture: &X, scope: Scope, streams: &[&str]) -> Vec<(String, u64)>
where
    X: Fixture,
    X::Store: StreamGuards,
{
    let mut batch = begin_for(fixture, scope).await;
    let applied = X::Store::applied(&mut batch, streams)
        .await
        .unwrap_or_else(|error| panic!("read the streams' versions: {error}"));
    applied.into_iter().map(|(stream, version)| (stream, version.0)).collect()
}

/// Writes `key` = `value` in a batch of version 1 that guards `stream` from `from` to `to`, and
/// commits it without a checkpoint.
async fn guarded_write<X>(
    fixture: &X,
    stream: &str,
    (from, to): (Option<u64>, u64),
    (key, value): (&str, u64),
) -> Saved
where
    X: Fixture,
    X::Store: StreamGuards,
{
    let mut batch = begin(fixture).await;
    X::Store::guard(&mut batch, stream, from.map(Version), Version(to));
    fixture.write(&mut batch, key, value).await;
    fixture.store().commit_batch(batch).await.unwrap_or_else(|error| panic!("commit: {error}"))
}

/// A batch that guards a stream applies only when the stream is still at the version the batch
/// read: a delivery seen twice is refused, nothing of it applied.
pub async fn a_guarded_batch_applies_only_from_the_version_it_read<X, F, Fut>(factory: F)
where
    X: Fixture,
    X::Store: StreamGuards,
    F: Fn() -> Fut,
    Fut: Future<Output = X>,
{
    let fixture = factory().await;
    assert!(applied(&fixture, V1, &["order-a", "order-b"]).await.is_empty(), "nothing applied yet");
    let first = guarded_write(&fixture, "order-a", (None, 2), ("k", 1));
    assert_eq!(first.await, Saved::ByConsumer);
    assert_eq!(applied(&fixture, V1, &["order-a", "order-b"]).await, [("order-a".into(), 2)]);
    assert_eq!(fixture.read("k").await, Some(1));

    // The same delivery again, as if nothing were applied: refused whole.
    let again = guarded_write(&fixture, "order-a", (None, 2), ("k", 10));
    assert_eq!(again.await, Saved::Moved);
    // From a version the stream has left.
    let stale = guarded_write(&fixture, "order-a", (Some(1), 3), ("k", 11));
    assert_eq!(stale.await, Saved::Moved);
    assert_eq!(fixture.read("k").await, Some(1), "the refused batches changed nothing");

    let next = guarded_write(&fixture, "order-a", (Some(2), 5), ("k", 2));
    assert_eq!(next.await, Saved::ByConsumer);
    let other = guarded_write(&fixture, "order-b", (None, 1), ("j", 1));
    assert_eq!(other.await, Saved::ByConsumer);
    assert_eq!(
        applied(&fixture, V1, &["order-b", "order-a", "order-c"]).await,
        [("order-a".into(), 5), ("order-b".into(), 1)]
    );
    assert_eq!((fixture.read("k").await, fixture.read("j").await), (Some(2), Some(1)));
    assert_eq!(checkpoint(&fixture).await, Position::START, "no checkpoint moved");
}

/// Two consumers applying the same stream's next events at once (a rebalance): one applies
/// them, the other is refused.
pub async fn racing_guarded_batches_of_one_stream_have_one_winner<X, F, Fut>(factory: F)
where
    X: Fixture,
    X::Store: StreamGuards,
    F: Fn() -> Fut,
    Fut: Future<Output = X>,
{
    let fixture = factory().await;
    for (round, from, to) in [(0, None, 1), (1, Some(1), 3)] {
        let (key_a, key_b) = (format!("a{round}"), format!("b{round}"));
        let (saved_a, saved_b) = futures::join!(
            guarded_write(&fixture, "order-a", (from, to), (&key_a, 1)),
            guarded_write(&fixture, "order-a", (from, to), (&key_b, 1)),
        );
        let winners = [saved_a, saved_b].into_iter().filter(|saved| *saved == Saved::ByConsumer);
        assert_eq!(winners.count(), 1, "round {round}: {saved_a:?}, {saved_b:?}");
        let written = [fixture.read(&key_a).await, fixture.read(&key_b).await];
        let expected = if saved_a == Saved::ByConsumer { [Some(1), None] } else { [None, Some(1)] };
        assert_eq!(written, expected, "round {round}: only the winner's changes");
        assert_eq!(applied(&fixture, V1, &["order-a"]).await, [("order-a".into(), to)]);
    }
}

/// Guards commit with the checkpoint too (a bus-fed projection catching up from the log), and
/// each version of a projection keeps its own: a new version starts with none, clearing a
/// version drops its guards.
pub async fn guards_move_with_the_checkpoint_and_are_kept_per_version<X, F, Fut>(factory: F)
where
    X: Fixture,
    X::Store: StreamGuards,
    F: Fn() -> Fut,
    Fut: Future<Output = X>,
{
    let fixture = factory().await;
    let mut batch = begin(&fixture).await;
    X::Store::guard(&mut batch, "order-a", None, Version(4));
    fixture.write(&mut batch, "k", 1).await;
    assert_eq!(commit(&fixture, batch, at(Position::START, position(4))).await, Saved::ByHandler);
    assert_eq!(applied(&fixture, V1, &["order-a"]).await, [("order-a".into(), 4)]);

    // The checkpoint is where the batch began, but the stream has moved: refused whole.
    let mut batch = begin(&fixture).await;
    X::Store::guard(&mut batch, "order-a", None, Version(6));
    fixture.write(&mut batch, "k", 2).await;
    assert_eq!(commit(&fixture, batch, at(position(4), position(6))).await, Saved::Moved);
    assert_eq!(fixture.read("k").await, Some(1));
    assert_eq!(checkpoint(&fixture).await, position(4), "the checkpoint stayed");

    assert!(applied(&fixture, V2, &["order-a"]).await.is_empty(), "version 2 starts with none");
    fixture.store().clear(V1).await.unwrap_or_else(|error| panic!("clear: {error}"));
    assert!(applied(&fixture, V1, &["order-a"]).await.is_empty(), "cleared with the version");
}
