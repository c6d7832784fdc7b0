//! The `timers` table: claims lease due timers in due order, skip what another runner holds,
//! and never offer a fired or cancelled timer again.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use composable::saga::{Timer, TimerStore};
use composable_postgres::PostgresTimerStore;

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

#[tokio::test]
async fn due_timers_are_leased_completed_and_cancelled() {
    let database = common::test_database().await;
    let timers = PostgresTimerStore::new(database.store.pool().clone());
    let now = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("a valid time");
    let seconds = chrono::Duration::seconds;
    let lease = Duration::from_secs(10);
    let late = timer("checkout", "2", now + seconds(20));
    let early = timer("checkout", "1", now + seconds(10));
    let other_saga = timer("shipping", "1", now);
    let cancelled = timer("checkout", "3", now);
    for t in [&late, &early, &other_saga, &cancelled] {
        timers.schedule(t.clone()).await.expect("schedule");
    }
    // Scheduling the same timer again changes nothing.
    timers.schedule(early.clone()).await.expect("schedule again");
    timers.cancel(cancelled.id).await.expect("cancel");

    assert!(timers.claim_due("checkout", now, lease, 10).await.expect("claim").is_empty());
    let due = timers.claim_due("checkout", now + seconds(30), lease, 10).await.expect("claim");
    assert_eq!(due, [early.clone(), late.clone()]);
    // Leased: another runner gets nothing until the lease runs out.
    assert!(
        timers.claim_due("checkout", now + seconds(35), lease, 10).await.expect("claim").is_empty()
    );
    timers.complete(early.id).await.expect("complete");
    // The lease ran out: the timer nobody completed is offered again, the fired one is not.
    let again = timers.claim_due("checkout", now + seconds(41), lease, 10).await.expect("claim");
    assert_eq!(again, [late]);
    database.drop_database().await;
}

#[tokio::test]
async fn concurrent_claims_never_hand_out_one_timer_twice() {
    let database = common::test_database().await;
    let timers = PostgresTimerStore::new(database.store.pool().clone());
    let now = Utc::now();
    for key in 0..40 {
        timers.schedule(timer("checkout", &key.to_string(), now)).await.expect("schedule");
    }
    let claims = (0..4).map(|_| {
        let timers = timers.clone();
        tokio::spawn(async move {
            timers.claim_due("checkout", now, Duration::from_secs(60), 15).await.expect("claim")
        })
    });
    let mut claimed: Vec<uuid::Uuid> = Vec::new();
    for claim in claims {
        claimed.extend(claim.await.expect("join").into_iter().map(|timer| timer.id));
    }
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!((total, claimed.len()), (40, 40));
    database.drop_database().await;
}
