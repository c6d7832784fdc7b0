//! Read-your-writes: a command's result carries the token of its events, and a query waits
//! until the consumer it reads from has reached it — woken by its progress, bounded by a
//! timeout, and told at once when the consumer is gone.

mod support;

use std::sync::Arc;
use std::time::Duration;

use composable::checkpoint::InMemoryCheckpointStore;
use composable::command::CommandContext;
use composable::consistency::Stale;
use composable::consumer::{EventHandler, LogConsumer};
use composable::service;
use composable::{AggregateRunner, EventStore, InMemoryEventStore, RecordedEvent};
use support::account::*;
use tokio::sync::Semaphore;

/// Handles a batch only when a permit is given (or always, without a gate).
struct Gated(Option<Arc<Semaphore>>);

impl EventHandler for Gated {
    type Error = std::convert::Infallible;

    async fn handle(&mut self, _events: &[RecordedEvent]) -> Result<(), Self::Error> {
        if let Some(gate) = &self.0 {
            gate.acquire().await.expect("the gate stays open").forget();
        }
        Ok(())
    }
}

fn consumer(store: &InMemoryEventStore, gate: Option<Arc<Semaphore>>) -> service::ServiceHandle {
    service::spawn(LogConsumer::new(
        "view",
        store.clone(),
        InMemoryCheckpointStore::new(),
        Gated(gate),
    ))
}

#[tokio::test]
async fn a_command_carries_the_token_of_its_events_and_none_when_nothing_happened() {
    let store = InMemoryEventStore::new();
    let accounts = AggregateRunner::<Account, _>::new(store.clone(), ());
    let done = accounts.execute("a", AccountCommand::Deposit(10)).await.unwrap();
    let append = done.append.expect("appended");
    assert_eq!(done.token.map(|token| token.position()), Some(append.last_position));

    let nothing = accounts.execute("a", AccountCommand::Deposit(0)).await.unwrap();
    assert_eq!(nothing.token, None, "no events, nothing to wait for");

    // A command delivered again is a duplicate (here the aggregate would refuse it now: the
    // money is gone); its token is at least its first delivery's.
    accounts.execute("b", AccountCommand::Deposit(5)).await.unwrap();
    let context = CommandContext::new_flow().with_command_id(uuid::Uuid::now_v7());
    let first = accounts.execute_in("b", AccountCommand::Withdraw(5), context).await.unwrap();
    accounts.execute("c", AccountCommand::Deposit(1)).await.unwrap();
    let again = accounts.execute_in("b", AccountCommand::Withdraw(5), context).await.unwrap();
    assert!(again.duplicate);
    assert!(again.token >= first.token, "{:?} before {:?}", again.token, first.token);
    assert_eq!(again.token.map(|token| token.position()), Some(store.head().await.unwrap()));
}

#[tokio::test]
async fn a_query_waits_until_the_consumer_has_reached_the_token() {
    let store = InMemoryEventStore::new();
    let accounts = AggregateRunner::<Account, _>::new(store.clone(), ());
    let gate = Arc::new(Semaphore::new(0));
    let view = consumer(&store, Some(Arc::clone(&gate)));
    let token = accounts.execute("a", AccountCommand::Deposit(10)).await.unwrap().token.unwrap();

    // Held at the gate: the wait times out with how far the view got.
    let stale = view.reached(token, Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(stale, Stale::Timeout { reached: None, .. }), "{stale}");

    gate.add_permits(1);
    let health = view.reached(token, Duration::from_secs(5)).await.expect("reached");
    assert!(health.position.is_some_and(|at| token.is_reached_by(at)));
    // A token already reached answers at once.
    view.reached(token, Duration::ZERO).await.expect("already there");
    view.stop().await.unwrap();
}

#[tokio::test]
async fn a_wait_on_a_stopped_consumer_ends_at_once() {
    let store = InMemoryEventStore::new();
    let accounts = AggregateRunner::<Account, _>::new(store.clone(), ());
    let view = consumer(&store, Some(Arc::new(Semaphore::new(0))));
    let token = accounts.execute("a", AccountCommand::Deposit(10)).await.unwrap().token.unwrap();
    view.request_stop();
    let stale = view.reached(token, Duration::from_secs(30)).await.unwrap_err();
    assert!(matches!(stale, Stale::Finished { .. }), "{stale}");
}

#[tokio::test]
async fn events_the_consumer_does_not_care_about_still_move_it_to_the_token() {
    let store = InMemoryEventStore::new();
    let accounts = AggregateRunner::<Account, _>::new(store.clone(), ());
    let view = consumer(&store, None);
    let mut last = None;
    for id in ["a", "b", "c"] {
        last = accounts.execute(id, AccountCommand::Deposit(1)).await.unwrap().token;
    }
    view.reached(last.unwrap(), Duration::from_secs(5)).await.expect("reached");
    view.stop().await.unwrap();
}
