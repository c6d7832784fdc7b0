//! The four checkout scenarios on in-memory backends, end to end through the real aggregates;
//! the saga alone through the testing kit; and what a restart or a duplicate delivery does.

use std::sync::Arc;
use std::time::Duration;

use checkout_saga::{
    CancelOrder, Charge, Checkout, CheckoutSaga, ConfirmOrder, DECLINED_CARD, Inventory, Order,
    OrderPlaced, OrderStatus, Payment, PaymentCaptured, PlaceOrder, Refund, Release, Reserve,
    Restock, StockReserved,
};
use composable::checkpoint::{CheckpointStore, InMemoryCheckpointStore};
use composable::consumer::EventHandler;
use composable::dispatch::{Dispatcher, LocalDispatcher};
use composable::saga::{Dispatch, InMemoryTimerStore, SagaEvents, SagaStatus};
use composable::testing::SagaTest;
use composable::{EventStore, InMemoryEventStore, Position, RecordedEvent, TestClock};

type InMemoryCheckout = Checkout<InMemoryEventStore, InMemoryTimerStore>;

fn checkout(clock: &TestClock) -> InMemoryCheckout {
    Checkout::new(InMemoryEventStore::new(), InMemoryTimerStore::new(), clock.clone())
}

fn place(order_id: &str, card: &str) -> PlaceOrder {
    PlaceOrder {
        order_id: order_id.into(),
        sku: "tea".into(),
        quantity: 2,
        total: 900,
        card: card.into(),
    }
}

async fn start(checkout: &InMemoryCheckout, stock: u32, manual: bool, card: &str) {
    checkout.inventory.execute("tea", Restock { quantity: stock, manual }).await.expect("restock");
    checkout.orders.execute("1", place("1", card)).await.expect("place the order");
    checkout.saga.run_until_idle().await.expect("run the saga");
}

async fn log(checkout: &InMemoryCheckout) -> Vec<RecordedEvent> {
    checkout.saga.store().read_all(Position::START, usize::MAX).await.expect("read the log")
}

fn names(events: &[RecordedEvent]) -> Vec<&str> {
    events.iter().filter(|e| !e.name.starts_with("saga.")).map(|e| e.name.as_str()).collect()
}

#[tokio::test]
async fn happy_path_confirms_the_order_and_carries_the_flow_ids() {
    let clock = TestClock::new();
    let checkout = checkout(&clock);
    start(&checkout, 10, false, "tok_visa").await;

    assert_eq!(checkout.orders.load("1").await.unwrap().state.status, OrderStatus::Confirmed);
    assert_eq!(checkout.payments.load("1").await.unwrap().state.captured, 900);
    assert_eq!(checkout.inventory.load("tea").await.unwrap().state.available, 8);
    let summary = checkout.saga.load("1").await.unwrap().unwrap();
    assert_eq!(summary.status, SagaStatus::Completed);
    assert_eq!(summary.completed, ["order_placed", "payment_captured", "stock_reserved"]);
    // The step's timer was cancelled when the next event came first.
    assert!(checkout.saga.timers().pending().is_empty());

    let events = log(&checkout).await;
    assert_eq!(
        names(&events),
        [
            "inventory.restocked",
            "order.placed",
            "payment.captured",
            "inventory.reserved",
            "order.confirmed"
        ]
    );
    let flow: Vec<&RecordedEvent> = events.iter().skip(1).collect();
    let correlation = flow[0].metadata.correlation_id;
    assert!(flow.iter().all(|event| event.metadata.correlation_id == correlation));
    let business: Vec<&&RecordedEvent> =
        flow.iter().filter(|e| !e.name.starts_with("saga.")).collect();
    for pair in business.windows(2) {
        assert_eq!(pair[1].metadata.causation_id, Some(pair[0].event_id), "{}", pair[1].name);
    }
}

#[tokio::test]
async fn a_declined_card_cancels_the_order() {
    let clock = TestClock::new();
    let checkout = checkout(&clock);
    start(&checkout, 10, false, DECLINED_CARD).await;

    assert_eq!(checkout.orders.load("1").await.unwrap().state.status, OrderStatus::Cancelled);
    assert!(!checkout.payments.load("1").await.unwrap().state.charged);
    assert_eq!(checkout.saga.load("1").await.unwrap().unwrap().status, SagaStatus::Compensated);
    assert_eq!(
        names(&log(&checkout).await),
        ["inventory.restocked", "order.placed", "order.cancelled"]
    );
    assert!(checkout.saga.timers().pending().is_empty());
}

#[tokio::test]
async fn missing_stock_refunds_the_payment_and_cancels_the_order() {
    let clock = TestClock::new();
    let checkout = checkout(&clock);
    start(&checkout, 1, false, "tok_visa").await;

    assert_eq!(checkout.orders.load("1").await.unwrap().state.status, OrderStatus::Cancelled);
    assert_eq!(checkout.payments.load("1").await.unwrap().state.captured, 0);
    assert_eq!(checkout.inventory.load("tea").await.unwrap().state.available, 1);
    assert_eq!(
        names(&log(&checkout).await),
        [
            "inventory.restocked",
            "order.placed",
            "payment.captured",
            "payment.refunded",
            "order.cancelled"
        ]
    );
}

#[tokio::test]
async fn a_silent_warehouse_times_out_into_full_compensation() {
    let clock = TestClock::new();
    let checkout = checkout(&clock);
    start(&checkout, 10, true, "tok_visa").await;
    assert_eq!(checkout.saga.load("1").await.unwrap().unwrap().status, SagaStatus::Running);
    let pending = checkout.saga.timers().pending();
    assert_eq!(pending.len(), 1);

    clock.advance(Duration::from_secs(29)).await;
    assert!(checkout.saga.run_until_idle().await.unwrap().is_empty());
    clock.advance(Duration::from_secs(1)).await;
    let fired = checkout.saga.run_until_idle().await.unwrap();
    assert_eq!(fired.len(), 1);
    assert!(fired[0].timed_out);

    assert_eq!(checkout.orders.load("1").await.unwrap().state.status, OrderStatus::Cancelled);
    assert_eq!(checkout.payments.load("1").await.unwrap().state.captured, 0);
    let stock = checkout.inventory.load("tea").await.unwrap().state;
    assert_eq!((stock.available, stock.reserved.len()), (10, 0));
    assert_eq!(
        names(&log(&checkout).await),
        [
            "inventory.restocked",
            "order.placed",
            "payment.captured",
            "inventory.reservation_requested",
            "inventory.released",
            "payment.refunded",
            "order.cancelled"
        ]
    );
    assert!(checkout.saga.timers().pending().is_empty());
    // Fired again, as after a crash between recording the timeout and marking the timer fired:
    // the instance has recorded it, so nothing happens.
    assert!(checkout.saga.fire(&pending[0]).await.expect("fire again").is_none());
    clock.advance(Duration::from_secs(3600)).await;
    assert!(checkout.saga.run_until_idle().await.unwrap().is_empty());
}

/// A new runner (a restarted process) reads the log from the start: every event is a duplicate
/// for the instance, and nothing is dispatched twice.
#[tokio::test]
async fn a_restarted_runner_ignores_what_the_saga_already_handled() {
    let clock = TestClock::new();
    let checkout = checkout(&clock);
    start(&checkout, 10, false, "tok_visa").await;
    let before = log(&checkout).await.len();

    let restarted =
        Checkout::new(checkout.saga.store().clone(), checkout.saga.timers().clone(), clock.clone());
    assert!(restarted.saga.run_until_idle().await.unwrap().is_empty());
    assert_eq!(log(&checkout).await.len(), before);
}

/// The process stops while the timer is pending, and a new one starts after it fell due: the
/// timer fires once, in the new process, and not again in a third.
#[tokio::test]
async fn a_timer_due_during_a_restart_fires_exactly_once() {
    let clock = TestClock::new();
    let (store, timers) = (InMemoryEventStore::new(), InMemoryTimerStore::new());
    let first = Checkout::new(store.clone(), timers.clone(), clock.clone());
    start(&first, 10, true, "tok_visa").await;
    drop(first);

    clock.advance(Duration::from_secs(45)).await;
    let second = Checkout::new(store.clone(), timers.clone(), clock.clone());
    let fired = second.saga.run_until_idle().await.unwrap();
    assert_eq!(fired.iter().filter(|progress| progress.timed_out).count(), 1);
    assert_eq!(second.orders.load("1").await.unwrap().state.status, OrderStatus::Cancelled);

    let third = Checkout::new(store, timers, clock.clone());
    clock.advance(Duration::from_secs(3600)).await;
    assert!(third.saga.run_until_idle().await.unwrap().is_empty());
}

fn placed(order_id: &str) -> OrderPlaced {
    OrderPlaced {
        order_id: order_id.into(),
        sku: "tea".into(),
        quantity: 2,
        total: 900,
        card: "tok_visa".into(),
    }
}

fn charge() -> Dispatch {
    Dispatch::to::<Payment>(
        "7",
        Charge { order_id: "7".into(), amount: 900, card: "tok_visa".into() },
    )
}

fn reserve() -> Dispatch {
    Dispatch::to::<Inventory>("tea", Reserve { order_id: "7".into(), quantity: 2 })
}

fn cancel(reason: &str) -> Dispatch {
    Dispatch::to::<Order>("7", CancelOrder { reason: reason.into() })
}

#[tokio::test]
async fn the_saga_alone_given_events_dispatches_the_next_commands() {
    let mut saga = SagaTest::<CheckoutSaga>::new();
    saga.given(placed("7")).await;
    saga.then_dispatched([charge()]);
    saga.given(PaymentCaptured { order_id: "7".into(), amount: 900 }).await;
    saga.then_dispatched([reserve()]);
    saga.given(StockReserved { order_id: "7".into(), quantity: 2 }).await;
    saga.then_dispatched([Dispatch::to::<Order>("7", ConfirmOrder)]);
    assert_eq!(saga.status("7").await, Some(SagaStatus::Completed));
    // Events after the end, and events of instances that never started, are ignored.
    assert!(saga.given(StockReserved { order_id: "7".into(), quantity: 2 }).await.is_none());
    assert!(saga.given(PaymentCaptured { order_id: "8".into(), amount: 1 }).await.is_none());
    saga.then_nothing_dispatched();
}

#[tokio::test]
async fn the_saga_alone_ignores_a_duplicate_delivery() {
    let mut saga = SagaTest::<CheckoutSaga>::new();
    saga.given(placed("7")).await;
    saga.then_dispatched([charge()]);
    assert!(saga.redeliver().await.is_none());
    saga.then_nothing_dispatched();
}

#[tokio::test]
async fn the_saga_alone_compensates_a_rejection() {
    let mut saga = SagaTest::<CheckoutSaga>::new();
    saga.reject::<Payment>("the card was declined");
    saga.given(placed("7")).await;
    saga.then_dispatched([charge(), cancel("payment failed")]);
    assert_eq!(saga.status("7").await, Some(SagaStatus::Compensated));
}

#[tokio::test]
async fn the_saga_alone_times_out_and_compensates_in_reverse_order() {
    let mut saga = SagaTest::<CheckoutSaga>::new();
    saga.given(placed("7")).await;
    saga.given(PaymentCaptured { order_id: "7".into(), amount: 900 }).await;
    saga.then_dispatched([charge(), reserve()]);

    assert!(saga.advance(Duration::from_secs(29)).await.is_empty());
    saga.then_nothing_dispatched();
    let fired = saga.advance(Duration::from_secs(1)).await;
    assert_eq!(fired.len(), 1);
    let dispatched = saga.take_dispatched();
    let commands: Vec<Dispatch> = dispatched.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(
        commands,
        [
            Dispatch::to::<Inventory>("tea", Release { order_id: "7".into() }),
            Dispatch::to::<Payment>("7", Refund),
            cancel("checkout failed; refunded"),
        ]
    );
    // Caused by the timer, in the instance's flow.
    assert!(dispatched.iter().all(|(_, context)| context.correlation_id == saga.correlation_id()));
    assert_eq!(saga.status("7").await, Some(SagaStatus::Compensated));
}

#[tokio::test]
async fn a_restarted_saga_resumes_from_its_checkpoint() {
    let clock = TestClock::new();
    let store = InMemoryEventStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    let with_checkpoints = |checkout: InMemoryCheckout| Checkout {
        saga: checkout.saga.with_checkpoints(checkpoints.clone()),
        ..checkout
    };
    let first =
        with_checkpoints(Checkout::new(store.clone(), InMemoryTimerStore::new(), clock.clone()));
    start(&first, 10, false, "tok_visa").await;
    let name = first.saga.checkpoint_name();
    assert_eq!(name, "saga.checkout");
    let log = log(&first).await;
    assert_eq!(checkpoints.load(&name).await.unwrap(), log.last().unwrap().position);
    drop(first);

    // A new process with the same checkpoints reads nothing old; one without rereads it all.
    let resumed =
        with_checkpoints(Checkout::new(store.clone(), InMemoryTimerStore::new(), clock.clone()));
    assert_eq!(resumed.saga.poll().await.unwrap(), (0, Vec::new()));
    let forgetful = Checkout::new(store.clone(), InMemoryTimerStore::new(), clock.clone());
    let mut reread = 0;
    loop {
        let (read, progress) = forgetful.saga.poll().await.unwrap();
        assert!(progress.is_empty(), "every event is a duplicate for its instance");
        if read == 0 {
            break;
        }
        reread += read;
    }
    assert_eq!(reread, log.len());

    // New events after the checkpoint are the only ones the resumed saga reads.
    resumed.orders.execute("2", place("2", "tok_visa")).await.unwrap();
    let (read, progress) = resumed.saga.poll().await.unwrap();
    assert_eq!(read, 1);
    assert_eq!(progress.len(), 1);
    assert_eq!(progress[0].step, "order_placed");
}

/// A dispatcher whose charges wait for each other: two at once get through, one alone never.
#[derive(Clone)]
struct Rendezvous {
    charges: Arc<tokio::sync::Barrier>,
    inner: Arc<LocalDispatcher>,
}

impl Dispatcher for Rendezvous {
    async fn dispatch(
        &self,
        dispatch: Dispatch,
        context: composable::CommandContext,
    ) -> Result<(), composable::dispatch::DispatchError> {
        if dispatch.aggregate() == "payment" {
            self.charges.wait().await;
        }
        self.inner.dispatch(dispatch, context).await
    }
}

#[tokio::test]
async fn the_sagas_log_input_handles_different_flows_concurrently() {
    let clock = TestClock::new();
    let store = InMemoryEventStore::new();
    let runners = checkout_saga::Aggregates::new(&store, &clock);
    let inner = Arc::new(
        LocalDispatcher::new()
            .route(Arc::clone(&runners.orders))
            .route(Arc::clone(&runners.payments))
            .route(Arc::clone(&runners.inventory)),
    );
    let dispatcher = Rendezvous { charges: Arc::new(tokio::sync::Barrier::new(2)), inner };
    let saga = Arc::new(
        composable::SagaRunner::<CheckoutSaga, _, _, _>::new(
            store.clone(),
            dispatcher,
            InMemoryTimerStore::new(),
        )
        .with_clock(clock.clone()),
    );
    runners.inventory.execute("tea", Restock { quantity: 10, manual: false }).await.unwrap();
    // Two checkouts, two flows: each one's charge waits for the other's.
    runners.orders.execute("1", place("1", "tok_visa")).await.unwrap();
    runners.orders.execute("2", place("2", "tok_visa")).await.unwrap();
    let placed: Vec<RecordedEvent> =
        log_of(&store).await.into_iter().filter(|event| event.name == "order.placed").collect();
    assert_eq!(placed.len(), 2);

    let mut handler = SagaEvents(Arc::clone(&saga));
    tokio::time::timeout(Duration::from_secs(5), handler.handle(&placed))
        .await
        .expect("both flows' charges were in flight at once")
        .expect("the batch was handled");
    assert!(runners.payments.load("1").await.unwrap().state.charged);
    assert!(runners.payments.load("2").await.unwrap().state.charged);
}

async fn log_of(store: &InMemoryEventStore) -> Vec<RecordedEvent> {
    store.read_all(Position::START, usize::MAX).await.expect("read the log")
}
