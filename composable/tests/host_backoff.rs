//! The host's one back-off: every service retries with it, and one whose failure outlasts its
//! attempts stops with the error instead of retrying for ever.

mod support;

use std::sync::Arc;
use std::time::Duration;

use composable::backoff::Backoff;
use composable::event_store::EventStoreError;
use composable::host::{App, RunningApp};
use composable::saga::InMemoryTimerStore;
use composable::service::ServiceState;
use composable::testing::HookedStore;
use composable::{AggregateRunner, InMemoryEventStore};
use support::flows::*;

/// A store where the sagas cannot record anything.
fn unrecordable() -> HookedStore<InMemoryEventStore> {
    HookedStore::new(InMemoryEventStore::new()).before_append(|stream, _| {
        let saga = stream.category().starts_with("saga.");
        async move {
            if saga {
                return Err(EventStoreError::Unavailable {
                    operation: "append",
                    source: "the saga's table is locked".into(),
                });
            }
            Ok(())
        }
    })
}

/// The shop on a store where the saga cannot record, every service retrying with `backoff`,
/// with a tally opened: the saga's input fails on it.
async fn opened_with(backoff: Backoff) -> RunningApp<HookedStore<InMemoryEventStore>> {
    let store = unrecordable();
    let tallies = Arc::new(AggregateRunner::<Tally, _>::new(store.clone(), ()));
    let counters = Arc::new(AggregateRunner::<Counter, _>::new(store.clone(), ()));
    let running = App::in_process("shop", store.clone())
        .timers(InMemoryTimerStore::new())
        .aggregate(&tallies)
        .aggregate(&counters)
        .saga::<Bonus>()
        .backoff(backoff)
        .build()
        .expect("wired")
        .start();
    tallies.execute("t1", Open { name: "t1".into() }).await.expect("opened");
    running
}

#[tokio::test]
async fn a_service_out_of_attempts_stops_with_its_error() {
    let running = opened_with(Backoff::constant(Duration::from_millis(5)).attempts(3)).await;
    let failed = tokio::time::timeout(Duration::from_secs(10), running.failure())
        .await
        .expect("the saga's input gives up after three attempts");
    assert_eq!(failed.name, "saga.bonus");
    match &failed.health.state {
        ServiceState::Failed(reason) => {
            assert!(reason.contains("the saga's table is locked"), "{reason}");
        }
        other => panic!("failed, not {other:?}"),
    }
    assert!(running.stop().await.is_err(), "the failure is reported when it stops");
}

#[tokio::test]
async fn without_a_limit_the_service_keeps_trying() {
    let running = opened_with(Backoff::constant(Duration::from_millis(5))).await;
    let failed = tokio::time::timeout(Duration::from_millis(300), running.failure()).await;
    assert!(failed.is_err(), "still retrying: {failed:?}");
    assert!(running.is_healthy());
    running.stop().await.expect("stops cleanly");
}
