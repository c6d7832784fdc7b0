//! The conformance suites of the smaller ports: every [`CheckpointStore`] and every
//! [`TimerStore`] — the in-memory twins and `composable-postgres` — passes them.
//!
//! Each check is a `pub async fn` taking a factory that returns a store; it uses names of its
//! own (checkpoint names, saga names), so stores may be shared between checks.
//! [`checkpoint_conformance!`](crate::checkpoint_conformance) and
//! [`timer_conformance!`](crate::timer_conformance) expand to one `#[tokio::test]` per check:
//!
//! ```ignore
//! composable_conformance::checkpoint_conformance!(|| async { composable::checkpoint::InMemoryCheckpointStore::new() });
//! composable_conformance::timer_conformance!(|| async { composable::saga::InMemoryTimerStore::new() });
//! ```

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use composable::checkpoint::CheckpointStore;
use composable::saga::{Timer, TimerStore};
use composable::stream::Position;

/// Expands to one `#[tokio::test]` per checkpoint check, each calling it with the given factory
/// (`impl Fn() -> impl Future<Output = impl CheckpointStore>`).
#[macro_export]
macro_rules! checkpoint_conformance {
    ($factory:expr) => {
        $crate::checkpoint_conformance!(@tests $factory;
            an_unsaved_checkpoint_is_the_start,
            a_saved_checkpoint_is_loaded_and_replaced_by_name,
            a_claim_is_held_by_one_holder_until_released_or_lapsed,
            concurrent_claims_have_one_winner,
        );
    };
    (@tests $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::ports::$check($factory).await;
            }
        )*
    };
}

/// Expands to one `#[tokio::test]` per timer check, each calling it with the given factory
/// (`impl Fn() -> impl Future<Output = impl TimerStore + Clone>`).
#[macro_export]
macro_rules! timer_conformance {
    ($factory:expr) => {
        $crate::timer_conformance!(@tests $factory;
            due_timers_are_leased_in_due_order_completed_and_cancelled,
            concurrent_claims_never_hand_out_one_timer_twice,
        );
    };
    (@tests $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::ports::$check($factory).await;
            }
        )*
    };
}

fn unique(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::now_v7().simple())
}

/// A checkpoint never saved loads as [`Position::START`].
pub async fn an_unsaved_checkpoint_is_the_start<K, F, Fut>(factory: F)
where
    K: CheckpointStore,
    F: Fn() -> Fut,
    Fut: Future<Output = K>,
{
    let checkpoints = factory().await;
    let loaded = checkpoints.load(&unique("never-saved")).await.expect("load");
    assert_eq!(loaded, Position::START);
}

/// What was saved under a name is what loads under it; a later save replaces it; names are
/// independent.
pub async fn a_saved_checkpoint_is_loaded_and_replaced_by_name<K, F, Fut>(factory: F)
where
    K: CheckpointStore,
    F: Fn() -> Fut,
    Fut: Future<Output = K>,
{
    let checkpoints = factory().await;
    let (relay, saga) = (unique("relay"), unique("saga.checkout"));
    checkpoints.save(&relay, Position::new(7, 2)).await.expect("save");
    checkpoints.save(&saga, Position::new(3, 1)).await.expect("save");
    assert_eq!(checkpoints.load(&relay).await.expect("load"), Position::new(7, 2));
    checkpoints.save(&relay, Position::new(9, 1)).await.expect("save again");
    assert_eq!(checkpoints.load(&relay).await.expect("load"), Position::new(9, 1));
    assert_eq!(checkpoints.load(&saga).await.expect("load"), Position::new(3, 1));
}

/// A claim is held by one holder: others are refused while it lasts; its holder renews it; a
/// released or lapsed claim goes to the next holder; names are independent.
pub async fn a_claim_is_held_by_one_holder_until_released_or_lapsed<K, F, Fut>(factory: F)
where
    K: CheckpointStore,
    F: Fn() -> Fut,
    Fut: Future<Output = K>,
{
    let checkpoints = factory().await;
    let (relay, other) = (unique("relay"), unique("saga.checkout"));
    let (first, second) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let long = Duration::from_secs(60);
    assert!(checkpoints.claim(&relay, first, long).await.expect("claim"), "a free claim");
    assert!(!checkpoints.claim(&relay, second, long).await.expect("claim"), "held by another");
    assert!(checkpoints.claim(&relay, first, long).await.expect("renew"), "its holder renews");
    assert!(checkpoints.claim(&other, second, long).await.expect("claim"), "names are apart");

    checkpoints.release(&relay, second).await.expect("release by a non-holder");
    assert!(!checkpoints.claim(&relay, second, long).await.expect("claim"), "still held");
    checkpoints.release(&relay, first).await.expect("release");
    assert!(checkpoints.claim(&relay, second, long).await.expect("claim"), "released");

    let lapsing = unique("lapsing");
    let short = Duration::from_millis(200);
    assert!(checkpoints.claim(&lapsing, first, short).await.expect("claim"));
    assert!(!checkpoints.claim(&lapsing, second, short).await.expect("claim"), "not yet lapsed");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(checkpoints.claim(&lapsing, second, long).await.expect("claim"), "lapsed");
    assert!(!checkpoints.claim(&lapsing, first, long).await.expect("claim"), "taken over");
}

/// Many holders claiming one free name at once: exactly one wins.
pub async fn concurrent_claims_have_one_winner<K, F, Fut>(factory: F)
where
    K: CheckpointStore,
    F: Fn() -> Fut,
    Fut: Future<Output = K>,
{
    let checkpoints = std::sync::Arc::new(factory().await);
    let name = unique("contended");
    let claims: Vec<_> = (0..8)
        .map(|_| {
            let (checkpoints, name) = (std::sync::Arc::clone(&checkpoints), name.clone());
            tokio::spawn(async move {
                checkpoints.claim(&name, uuid::Uuid::now_v7(), Duration::from_secs(60)).await
            })
        })
        .collect();
    let mut winners = 0;
    for claim in claims {
        if claim.await.expect("a claim task").expect("claim") {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "one holder, whatever the interleaving");
}

fn timer(saga: &str, key: &str, due_at: DateTime<Utc>) -> Timer {
    Timer {
        id: uuid::Uuid::now_v7(),
        saga: saga.into(),
        key: key.into(),
        step: "payment_captured".into(),
        correlation_id: uuid::Uuid::now_v7(),
        due_at,
    }
}

/// Claims return a saga's due timers in due order and lease them; a lease that runs out offers
/// the timer again; a completed or cancelled timer is never offered; scheduling twice changes
/// nothing; other sagas' timers are not touched.
pub async fn due_timers_are_leased_in_due_order_completed_and_cancelled<T, F, Fut>(factory: F)
where
    T: TimerStore,
    F: Fn() -> Fut,
    Fut: Future<Output = T>,
{
    let timers = factory().await;
    let (saga, other) = (unique("checkout"), unique("shipping"));
    let now = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("a valid time");
    let seconds = chrono::Duration::seconds;
    let lease = Duration::from_secs(10);
    let late = timer(&saga, "2", now + seconds(20));
    let early = timer(&saga, "1", now + seconds(10));
    let other_saga = timer(&other, "1", now);
    let cancelled = timer(&saga, "3", now);
    for t in [&late, &early, &other_saga, &cancelled] {
        timers.schedule(t.clone()).await.expect("schedule");
    }
    timers.schedule(early.clone()).await.expect("schedule again");
    timers.cancel(cancelled.id).await.expect("cancel");

    assert!(timers.claim_due(&saga, now, lease, 10).await.expect("claim").is_empty());
    let due = timers.claim_due(&saga, now + seconds(30), lease, 10).await.expect("claim");
    assert_eq!(due, [early.clone(), late.clone()], "due timers, in due order, once each");
    assert!(
        timers.claim_due(&saga, now + seconds(35), lease, 10).await.expect("claim").is_empty(),
        "leased timers are not offered while the lease runs"
    );
    timers.complete(early.id).await.expect("complete");
    let again = timers.claim_due(&saga, now + seconds(41), lease, 10).await.expect("claim");
    assert_eq!(again, [late], "an expired lease offers the timer again, a completed one never");
    let others = timers.claim_due(&other, now, lease, 10).await.expect("claim");
    assert_eq!(others, [other_saga], "another saga's timer is its own");
}

/// Claims racing each other hand out every due timer exactly once.
pub async fn concurrent_claims_never_hand_out_one_timer_twice<T, F, Fut>(factory: F)
where
    T: TimerStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = T>,
{
    let timers = factory().await;
    let saga = unique("checkout");
    let now = Utc::now();
    for key in 0..40 {
        timers.schedule(timer(&saga, &key.to_string(), now)).await.expect("schedule");
    }
    let claims = (0..4).map(|_| {
        let (timers, saga) = (timers.clone(), saga.clone());
        tokio::spawn(async move {
            timers.claim_due(&saga, now, Duration::from_secs(60), 15).await.expect("claim")
        })
    });
    let mut claimed: Vec<uuid::Uuid> = Vec::new();
    for claim in claims {
        claimed.extend(claim.await.expect("a claim").into_iter().map(|timer| timer.id));
    }
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!((total, claimed.len()), (40, 40), "every timer claimed once");
}
