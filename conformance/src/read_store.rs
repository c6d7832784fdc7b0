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
use composable::projection::{DeadLetter, ReadStore};
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

const NAME: &str = "projection.conformance";

fn at(after: Position, to: Position) -> Checkpoint<'static> {
    Checkpoint { name: NAME, after, to }
}

fn position(sequence: u64) -> Position {
    Position::new(1, sequence)
}

async fn begin<X: Fixture>(fixture: &X) -> <X::Store as ReadStore>::Batch {
    fixture.store().begin().await.unwrap_or_else(|error| panic!("begin a batch: {error}"))
}

async fn commit<X: Fixture>(
    fixture: &X,
    batch: <X::Store as ReadStore>::Batch,
    at: Checkpoint<'_>,
) -> Saved {
    fixture.store().commit(batch, at).await.unwrap_or_else(|error| panic!("commit: {error}"))
}

async fn checkpoint<X: Fixture>(fixture: &X) -> Position {
    fixture
        .store()
        .checkpoints()
        .load(NAME)
        .await
        .unwrap_or_else(|error| panic!("load the checkpoint: {error}"))
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

    let mut batch = begin(&fixture).await;
    fixture.write(&mut batch, "k", 2).await;
    assert_eq!(commit(&fixture, batch, at(position(3), position(7))).await, Saved::ByHandler);
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
    let mut first = begin(&fixture).await;
    fixture.write(&mut first, "k", 1).await;
    assert_eq!(commit(&fixture, first, at(Position::START, position(2))).await, Saved::ByHandler);

    // The same batch again, from where it began: the checkpoint has moved.
    let mut again = begin(&fixture).await;
    fixture.write(&mut again, "k", 10).await;
    fixture.write(&mut again, "other", 10).await;
    assert_eq!(commit(&fixture, again, at(Position::START, position(2))).await, Saved::Moved);
    assert_eq!(fixture.read("k").await, Some(1), "the stale batch changed nothing");
    assert_eq!(fixture.read("other").await, None);

    // From an older position than the checkpoint's, too.
    let mut stale = begin(&fixture).await;
    fixture.write(&mut stale, "k", 20).await;
    assert_eq!(commit(&fixture, stale, at(position(1), position(5))).await, Saved::Moved);
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
    fixture.store().commit_batch(batch).await.unwrap_or_else(|error| panic!("commit: {error}"));
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
    let mut batch = begin(&fixture).await;
    fixture.write(&mut batch, "j", 1).await;
    assert_eq!(commit(&fixture, batch, at(Position::START, position(1))).await, Saved::ByHandler);
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
/// order with their streams; a replay takes each one once.
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
}
