//! The checkout on a store whose global log lags behind its commits, as a gap-safe PostgreSQL
//! log does while an older transaction on the server is still running: the saga waits for the
//! log to reach its head instead of calling itself idle, and says so when it never gets there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use checkout_saga::{Checkout, OrderStatus, PlaceOrder, Restock};
use composable::saga::{InMemoryTimerStore, SagaError, SagaStatus};
use composable::testing::HookedStore;
use composable::{EventStore, ExpectedVersion, InMemoryEventStore, Position, StreamId, TestClock};
use composable_conformance::event_store::new_events;

/// An in-memory store whose `read_all` shows each append only [`Lag::lag`] after it returned —
/// or nothing new at all, once [`Lag::stuck`] — while `head` tells the truth.
type LaggingStore = HookedStore<InMemoryEventStore>;

/// How a [`LaggingStore`] lags.
#[derive(Clone, Default)]
struct Lag {
    lag: Duration,
    /// Each append's last position and when it returned, in order.
    appended: Arc<Mutex<Vec<(Position, Instant)>>>,
    stuck: Arc<AtomicBool>,
}

impl Lag {
    /// The last position old enough to be shown.
    fn visible(&self) -> Position {
        let appended = self.appended.lock().unwrap_or_else(PoisonError::into_inner);
        appended
            .iter()
            .take_while(|(_, at)| at.elapsed() >= self.lag)
            .last()
            .map_or(Position::START, |(position, _)| *position)
    }
}

/// A store lagging by `lag`, and its lag, to get it stuck.
fn lagging_by(lag: Duration) -> (LaggingStore, Lag) {
    let control = Lag { lag, ..Lag::default() };
    let (appends, reads) = (control.clone(), control.clone());
    let store = HookedStore::new(InMemoryEventStore::new())
        .after_append(move |_, appended| {
            let mut log = appends.appended.lock().unwrap_or_else(PoisonError::into_inner);
            log.push((appended.last_position, Instant::now()));
            log.sort_by_key(|(position, _)| *position);
        })
        .filter_reads(move |mut events| {
            if reads.stuck.load(Ordering::SeqCst) {
                return Vec::new();
            }
            let visible = reads.visible();
            events.retain(|event| event.position <= visible);
            events
        });
    (store, control)
}

async fn place_an_order(checkout: &Checkout<LaggingStore, InMemoryTimerStore>) {
    let restock = Restock { quantity: 5, manual: false };
    checkout.inventory.execute("tea", restock).await.expect("restock");
    let order = PlaceOrder {
        order_id: "1".into(),
        sku: "tea".into(),
        quantity: 2,
        total: 900,
        card: "tok_visa".into(),
    };
    checkout.orders.execute("1", order).await.expect("place");
}

#[tokio::test]
async fn the_saga_waits_for_a_lagging_log_to_show_every_commit() {
    let (store, _lag) = lagging_by(Duration::from_millis(20));
    let checkout = Checkout::new(store, InMemoryTimerStore::new(), TestClock::new());
    place_an_order(&checkout).await;

    // The events of the saga's own commands are held back too; the run goes on regardless.
    let progress = checkout.saga.run_until_idle().await.expect("run the saga");
    assert_eq!(progress.len(), 3, "{progress:#?}");
    assert_eq!(checkout.orders.load("1").await.expect("load").state.status, OrderStatus::Confirmed);
    let saga = checkout.saga.load("1").await.expect("load the saga").expect("started");
    assert_eq!(saga.status, SagaStatus::Completed);
}

#[tokio::test]
async fn a_log_that_never_reaches_its_head_is_reported_as_behind() {
    let (store, lag) = lagging_by(Duration::ZERO);
    lag.stuck.store(true, Ordering::SeqCst);
    let checkout = Checkout::new(store.clone(), InMemoryTimerStore::new(), TestClock::new());
    let checkout =
        Checkout { saga: checkout.saga.with_settle_timeout(Duration::from_millis(50)), ..checkout };
    place_an_order(&checkout).await;

    let error = checkout.saga.run_until_idle().await.expect_err("the log never caught up");
    let head = store.head().await.expect("head");
    match error {
        SagaError::Behind { head: reported, reached, waited } => {
            assert_eq!(reported, head);
            assert_eq!(reached, Position::START);
            assert!(waited >= Duration::from_millis(50), "{waited:?}");
        }
        other => panic!("expected `Behind`, got {other}"),
    }
    assert!(checkout.saga.load("1").await.expect("load the saga").is_none(), "nothing was read");

    // Once the transaction holding the log back finishes, the same runner carries on.
    lag.stuck.store(false, Ordering::SeqCst);
    checkout.saga.run_until_idle().await.expect("run the saga");
    assert_eq!(checkout.orders.load("1").await.expect("load").state.status, OrderStatus::Confirmed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_writers_committing_all_the_time_do_not_keep_the_saga_running() {
    let (store, _lag) = lagging_by(Duration::from_millis(3));
    let checkout = Checkout::new(store.clone(), InMemoryTimerStore::new(), TestClock::new());
    place_an_order(&checkout).await;
    // Another writer appends every millisecond, so the log is never all shown.
    let writer = tokio::spawn(async move {
        let stream = StreamId::new("other", "1").expect("stream id");
        loop {
            let event = new_events(0, 1);
            store.append(&stream, ExpectedVersion::Any, event).await.expect("append");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });

    let run = tokio::time::timeout(Duration::from_secs(10), checkout.saga.run_until_idle()).await;
    writer.abort();
    let progress = run.expect("the saga stops at the head it saw").expect("run the saga");
    assert_eq!(progress.len(), 3, "{progress:#?}");
    assert_eq!(checkout.orders.load("1").await.expect("load").state.status, OrderStatus::Confirmed);
}
