//! The checkout through the application host: the four scenarios in one process on in-memory
//! backends; the happy path over an in-memory bus, in one process and split into two by roles;
//! and every mistake the host refuses when it is built.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use checkout_saga::{Aggregates, CheckoutSaga, DECLINED_CARD, OrderStatus, PlaceOrder, Restock};
use composable::bus::InMemoryBus;
use composable::checkpoint::InMemoryCheckpointStore;
use composable::dispatch::LocalDispatcher;
use composable::host::{App, HostError, Role};
use composable::saga::{InMemoryTimerStore, SagaStatus, Timer, TimerError, TimerStore};
use composable::testing::HookedStore;
use composable::{EventStore, InMemoryEventStore, Saga, SagaRunner, TestClock};

/// The three aggregates' runners on one in-memory store.
type Runners = Aggregates<InMemoryEventStore>;

fn place(card: &str) -> PlaceOrder {
    PlaceOrder {
        order_id: "1".into(),
        sku: "tea".into(),
        quantity: 2,
        total: 900,
        card: card.into(),
    }
}

/// The saga's instance `1`, read from the store (the host's own runner is inside it).
async fn saga_status(
    store: &InMemoryEventStore,
    timers: &InMemoryTimerStore,
) -> Option<SagaStatus> {
    let reader = SagaRunner::<CheckoutSaga, _, _, _>::new(
        store.clone(),
        LocalDispatcher::new(),
        timers.clone(),
    );
    reader.load("1").await.expect("load the saga").map(|summary| summary.status)
}

/// Waits (real time, bounded) until instance `1` reaches `status`.
async fn wait_for(store: &InMemoryEventStore, timers: &InMemoryTimerStore, status: SagaStatus) {
    let reached = tokio::time::timeout(Duration::from_secs(10), async {
        while saga_status(store, timers).await != Some(status) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "the saga did not reach {status:?}: {:?}",
        saga_status(store, timers).await
    );
}

/// The checkout in one process on `store`: the three aggregates of `runners`, the saga with
/// its timers in `timers`, everything on `clock`; started.
fn in_process<S, T>(
    store: &S,
    timers: T,
    clock: &TestClock,
    runners: &Aggregates<S>,
) -> composable::host::RunningApp<S>
where
    S: EventStore + Clone,
    T: TimerStore + Clone,
{
    App::in_process("checkout", store.clone())
        .timers(timers)
        .clock(clock.clone())
        .aggregate(&runners.orders)
        .aggregate(&runners.payments)
        .aggregate(&runners.inventory)
        .saga::<CheckoutSaga>()
        .build()
        .expect("the wiring is complete")
        .start()
}

/// One scenario in one process: restock, place the order, let the host settle.
async fn scenario(
    card: &str,
    stock: u32,
    manual: bool,
) -> (
    Runners,
    InMemoryEventStore,
    InMemoryTimerStore,
    TestClock,
    composable::host::RunningApp<InMemoryEventStore>,
) {
    let (store, timers, clock) =
        (InMemoryEventStore::new(), InMemoryTimerStore::new(), TestClock::new());
    let runners = Runners::new(&store, &clock);
    let running = in_process(&store, timers.clone(), &clock, &runners);
    runners.inventory.execute("tea", Restock { quantity: stock, manual }).await.expect("restock");
    runners.orders.execute("1", place(card)).await.expect("place the order");
    running.settle().await.expect("the host settles");
    (runners, store, timers, clock, running)
}

#[tokio::test]
async fn the_happy_path_confirms_the_order() {
    let (runners, store, timers, _clock, running) = scenario("tok_visa", 10, false).await;
    assert_eq!(saga_status(&store, &timers).await, Some(SagaStatus::Completed));
    assert_eq!(runners.orders.load("1").await.unwrap().state.status, OrderStatus::Confirmed);
    assert_eq!(runners.payments.load("1").await.unwrap().state.captured, 900);
    assert_eq!(runners.inventory.load("tea").await.unwrap().state.available, 8);
    assert!(running.is_healthy(), "{:?}", running.health());
    let caught_up: Vec<bool> =
        running.health().iter().map(|status| status.health.caught_up).collect();
    assert_eq!(caught_up, [true, true], "the saga's input and its timers");
    running.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_declined_card_cancels_the_order() {
    let (runners, store, timers, _clock, running) = scenario(DECLINED_CARD, 10, false).await;
    assert_eq!(saga_status(&store, &timers).await, Some(SagaStatus::Compensated));
    assert_eq!(runners.orders.load("1").await.unwrap().state.status, OrderStatus::Cancelled);
    assert!(!runners.payments.load("1").await.unwrap().state.charged);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn missing_stock_refunds_the_payment_and_cancels_the_order() {
    let (runners, store, timers, _clock, running) = scenario("tok_visa", 1, false).await;
    assert_eq!(saga_status(&store, &timers).await, Some(SagaStatus::Compensated));
    assert_eq!(runners.orders.load("1").await.unwrap().state.status, OrderStatus::Cancelled);
    assert_eq!(runners.payments.load("1").await.unwrap().state.captured, 0);
    assert_eq!(runners.inventory.load("tea").await.unwrap().state.available, 1);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_silent_warehouse_times_out_on_the_hosts_clock() {
    let (runners, store, timers, clock, running) = scenario("tok_visa", 10, true).await;
    assert_eq!(saga_status(&store, &timers).await, Some(SagaStatus::Running));
    clock.advance(Duration::from_secs(29)).await;
    running.settle().await.unwrap();
    assert_eq!(saga_status(&store, &timers).await, Some(SagaStatus::Running));

    clock.advance(Duration::from_secs(1)).await;
    wait_for(&store, &timers, SagaStatus::Compensated).await;
    running.settle().await.unwrap();
    assert_eq!(runners.orders.load("1").await.unwrap().state.status, OrderStatus::Cancelled);
    assert_eq!(runners.payments.load("1").await.unwrap().state.captured, 0);
    let stock = runners.inventory.load("tea").await.unwrap().state;
    assert_eq!((stock.available, stock.reserved.len()), (10, 0));
    assert!(timers.pending().is_empty());
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_waits_for_the_saga_to_read_the_events_committed_before_it_fell_due() {
    let (store, timers, clock) =
        (InMemoryEventStore::new(), InMemoryTimerStore::new(), TestClock::new());
    // The saga's input stops short of any `inventory.reserved` while `behind` is set, as an
    // input stuck on a backlog does; the head tells the truth.
    let behind = Arc::new(AtomicBool::new(true));
    let held = Arc::clone(&behind);
    let lagging = HookedStore::new(store.clone()).filter_reads(move |mut events| {
        if held.load(Ordering::SeqCst)
            && let Some(at) = events.iter().position(|event| event.name == "inventory.reserved")
        {
            events.truncate(at);
        }
        events
    });
    let runners = Aggregates::new(&lagging, &clock);
    let running = in_process(&lagging, timers.clone(), &clock, &runners);
    runners.inventory.execute("tea", Restock { quantity: 10, manual: false }).await.unwrap();
    runners.orders.execute("1", place("tok_visa")).await.unwrap();

    // Paid, and the warehouse reserved the stock at once: the reservation is committed, the
    // saga has not read it, and the step's 30 s timer is armed.
    let armed = tokio::time::timeout(Duration::from_secs(10), async {
        while timers.pending().len() != 1
            || runners.inventory.load("tea").await.unwrap().state.available != 8
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(armed.is_ok(), "the reservation step never started");

    // The timer falls due while the saga is still behind the reservation: it waits.
    clock.advance(Duration::from_secs(31)).await;
    for _ in 0..5 {
        clock.advance(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(saga_status(&store, &timers).await, Some(SagaStatus::Running));
    assert_eq!(timers.pending().len(), 1, "the timeout fired while the saga was behind");

    // Caught up, the saga completes the step the reservation completed in time, and the
    // timeout is stale.
    behind.store(false, Ordering::SeqCst);
    wait_for(&store, &timers, SagaStatus::Completed).await;
    running.settle().await.unwrap();
    assert_eq!(runners.orders.load("1").await.unwrap().state.status, OrderStatus::Confirmed);
    assert_eq!(runners.payments.load("1").await.unwrap().state.captured, 900);
    let stock = runners.inventory.load("tea").await.unwrap().state;
    assert_eq!((stock.available, stock.reserved.len()), (8, 1));
    assert!(timers.pending().is_empty());
    running.stop().await.unwrap();
}

/// Timers whose every claim takes real time, as a database's does.
#[derive(Clone)]
struct SlowTimers(InMemoryTimerStore);

impl TimerStore for SlowTimers {
    async fn schedule(&self, timer: Timer) -> Result<(), TimerError> {
        self.0.schedule(timer).await
    }

    async fn cancel(&self, id: uuid::Uuid) -> Result<(), TimerError> {
        self.0.cancel(id).await
    }

    async fn claim_due(
        &self,
        saga: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Timer>, TimerError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.0.claim_due(saga, now, lease, limit).await
    }

    async fn complete(&self, id: uuid::Uuid) -> Result<(), TimerError> {
        self.0.complete(id).await
    }
}

#[tokio::test]
async fn a_timeout_fires_when_the_clock_moves_on_while_the_timers_are_being_claimed() {
    let (store, timers, clock) =
        (InMemoryEventStore::new(), InMemoryTimerStore::new(), TestClock::new());
    let runners = Runners::new(&store, &clock);
    let running = in_process(&store, SlowTimers(timers.clone()), &clock, &runners);
    runners.inventory.execute("tea", Restock { quantity: 10, manual: true }).await.unwrap();
    runners.orders.execute("1", place("tok_visa")).await.unwrap();
    running.settle().await.unwrap();
    assert_eq!(saga_status(&store, &timers).await, Some(SagaStatus::Running));
    // The timer service wakes at the first second and claims with that time; the clock reaches
    // the deadline while the claim is in flight. The next pass must not wait for another advance.
    clock.advance(Duration::from_secs(30)).await;
    wait_for(&store, &timers, SagaStatus::Compensated).await;
    running.stop().await.unwrap();
}

#[tokio::test]
async fn two_hosts_of_one_saga_leave_the_work_to_the_claim_holder_and_take_over_when_it_stops() {
    let (store, timers, clock) =
        (InMemoryEventStore::new(), InMemoryTimerStore::new(), TestClock::new());
    let checkpoints = InMemoryCheckpointStore::new();
    let runners = Runners::new(&store, &clock);
    let host = || {
        App::in_process("checkout", store.clone())
            .timers(timers.clone())
            .checkpoints(checkpoints.clone())
            .claim_ttl(Duration::from_millis(300))
            .aggregate(&runners.orders)
            .aggregate(&runners.payments)
            .aggregate(&runners.inventory)
            .saga::<CheckoutSaga>()
            .build()
            .expect("the wiring is complete")
            .start()
    };
    let first = host();
    let mut input = first.health().into_iter().next().expect("the saga's input");
    let reached = tokio::time::timeout(Duration::from_secs(10), async {
        while !input.health.caught_up {
            tokio::time::sleep(Duration::from_millis(1)).await;
            input = first.health().into_iter().next().expect("the saga's input");
        }
    })
    .await;
    assert!(reached.is_ok(), "the first host's saga input did not start");
    let second = host();
    let standing_by = tokio::time::timeout(Duration::from_secs(10), async {
        while !second.health().iter().any(|status| status.health.standby) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(standing_by.is_ok(), "the second host's saga input should stand by");

    runners.inventory.execute("tea", Restock { quantity: 10, manual: false }).await.unwrap();
    runners.orders.execute("1", place("tok_visa")).await.unwrap();
    wait_for(&store, &timers, SagaStatus::Completed).await;

    // The holder stops (releasing its claim); the standby carries on with the next checkout.
    first.stop().await.expect("a clean stop");
    let mut next = place("tok_visa");
    next.order_id = "2".into();
    runners.orders.execute("2", next).await.unwrap();
    let reader = SagaRunner::<CheckoutSaga, _, _, _>::new(
        store.clone(),
        LocalDispatcher::new(),
        timers.clone(),
    );
    let completed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let status = reader.load("2").await.unwrap().map(|summary| summary.status);
            if status == Some(SagaStatus::Completed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(completed.is_ok(), "the standby did not take over: {:?}", second.health());
    assert!(second.health().iter().all(|status| !status.health.standby));
    second.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn over_a_bus_the_checkout_completes_in_one_process_or_split_by_role() {
    for split in [false, true] {
        let (store, timers, clock) =
            (InMemoryEventStore::new(), InMemoryTimerStore::new(), TestClock::new());
        let bus = InMemoryBus::new();
        let runners = Runners::new(&store, &clock);
        let app = |roles: Option<&[&str]>| {
            let builder = App::on_bus("checkout", store.clone(), bus.clone())
                .timers(timers.clone())
                .clock(clock.clone())
                .aggregate(&runners.orders)
                .aggregate(&runners.payments)
                .aggregate(&runners.inventory)
                .saga::<CheckoutSaga>();
            match roles {
                Some(roles) => builder.roles(roles.iter().copied()),
                None => builder,
            }
            .build()
            .expect("the wiring is complete")
        };
        let apps = if split {
            let aggregates = app(Some(&["relay", "commands"]));
            let saga = app(Some(&["checkout"]));
            let roles: Vec<Role> = saga.services().into_iter().map(|(_, role)| role).collect();
            assert_eq!(roles, [Role::Saga("checkout"), Role::Saga("checkout")]);
            vec![aggregates.start(), saga.start()]
        } else {
            let all = app(None);
            assert_eq!(
                all.topics(),
                [
                    "checkout.checkout-replies",
                    "inventory-commands",
                    "inventory-events",
                    "order-commands",
                    "order-events",
                    "payment-commands",
                    "payment-events",
                    "saga.checkout-events",
                ]
            );
            let roles: Vec<Role> = all.services().into_iter().map(|(_, role)| role).collect();
            assert_eq!(
                roles,
                [Role::Relay, Role::Commands, Role::Saga("checkout"), Role::Saga("checkout")]
            );
            vec![all.start()]
        };
        runners.inventory.execute("tea", Restock { quantity: 10, manual: false }).await.unwrap();
        runners.orders.execute("1", place("tok_visa")).await.unwrap();
        wait_for(&store, &timers, SagaStatus::Completed).await;
        assert_eq!(runners.orders.load("1").await.unwrap().state.status, OrderStatus::Confirmed);
        assert_eq!(runners.payments.load("1").await.unwrap().state.captured, 900);
        for running in apps {
            assert!(running.is_healthy(), "{:?}", running.health());
            running.stop().await.expect("a clean stop");
        }
    }
}

#[test]
fn the_host_refuses_incomplete_or_conflicting_wiring() {
    let (store, timers, clock) =
        (InMemoryEventStore::new(), InMemoryTimerStore::new(), TestClock::new());
    let runners = Runners::new(&store, &clock);
    let builder = || App::in_process("checkout", store.clone()).timers(timers.clone());

    // The saga waits for payment and inventory events nobody would emit.
    let error = builder().aggregate(&runners.orders).saga::<CheckoutSaga>().build().unwrap_err();
    assert!(
        matches!(error, HostError::UnpublishedInput { saga: "checkout", event } if event.starts_with("payment.")),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("register the aggregate that emits it with `.aggregate(&runner)`"),
        "{error}"
    );

    // What the host checks the registered aggregates against: every `Dispatch::to::<A>` of
    // the saga, the helper `give_up_reservation` included.
    assert_eq!(CheckoutSaga::DISPATCHES, ["payment", "inventory", "order"]);

    let complete = || {
        builder()
            .aggregate(&runners.orders)
            .aggregate(&runners.payments)
            .aggregate(&runners.inventory)
    };
    let error = complete().aggregate(&runners.orders).build().unwrap_err();
    assert_eq!(error, HostError::DuplicateAggregate { category: "order" });

    let error = complete().saga::<CheckoutSaga>().saga::<CheckoutSaga>().build().unwrap_err();
    assert_eq!(error, HostError::DuplicateService { name: "saga.checkout".into() });

    let error = complete().saga::<CheckoutSaga>().roles(["shipping"]).build().unwrap_err();
    assert_eq!(
        error,
        HostError::UnknownRole { role: "shipping".into(), known: vec!["checkout".into()] }
    );
    assert_eq!(
        error.to_string(),
        "`shipping` is not a role of this application; its roles are [\"checkout\"]"
    );

    let error = complete().saga::<CheckoutSaga>().roles(Vec::<String>::new()).build().unwrap_err();
    assert!(matches!(error, HostError::NothingToRun { .. }), "{error}");
}

fn order(number: usize) -> (String, PlaceOrder) {
    let id = format!("o{number}");
    let place = PlaceOrder {
        order_id: id.clone(),
        sku: "tea".into(),
        quantity: 1,
        total: 100 + number as u64,
        card: "tok_visa".into(),
    };
    (id, place)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_stopped_mid_run_hands_back_its_work_and_the_next_one_carries_on() {
    const ORDERS: usize = 40;
    let (store, timers, clock) =
        (InMemoryEventStore::new(), InMemoryTimerStore::new(), TestClock::new());
    let (bus, checkpoints) = (InMemoryBus::new(), InMemoryCheckpointStore::new());
    let runners = Runners::new(&store, &clock);
    let app = || {
        App::on_bus("checkout", store.clone(), bus.clone())
            .timers(timers.clone())
            .checkpoints(checkpoints.clone())
            .clock(clock.clone())
            .aggregate(&runners.orders)
            .aggregate(&runners.payments)
            .aggregate(&runners.inventory)
            .saga::<CheckoutSaga>()
            .build()
            .expect("the wiring is complete")
    };
    runners.inventory.execute("tea", Restock { quantity: 100, manual: false }).await.unwrap();
    for number in 0..ORDERS {
        let (id, place) = order(number);
        runners.orders.execute(&id, place).await.unwrap();
    }
    let confirmed = async || {
        let mut confirmed = 0;
        for number in 0..ORDERS {
            let status = runners.orders.load(order(number).0).await.unwrap().state.status;
            confirmed += usize::from(status == OrderStatus::Confirmed);
        }
        confirmed
    };

    // Stopped as soon as the first card is charged: the checkouts are in flight.
    let first = app().start();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !runners.payments.load(order(0).0).await.unwrap().state.charged {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    })
    .await
    .expect("a first charge");
    let at_stop = confirmed().await;
    let stopping = std::time::Instant::now();
    first.stop().await.expect("every service stops cleanly");
    assert!(at_stop < ORDERS, "stopped mid-run ({at_stop} of {ORDERS} confirmed)");
    assert!(stopping.elapsed() < Duration::from_secs(5), "no service waited on a stopped one");
    // Nothing runs any more: the log stands still.
    let head = store.head().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.head().await.unwrap(), head, "no service of the stopped host still runs");

    // The next host carries on from the checkpoints and the bus's offsets.
    let second = app().start();
    tokio::time::timeout(Duration::from_secs(20), async {
        while confirmed().await < ORDERS {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("every checkout finishes");
    second.stop().await.expect("every service stops cleanly");
    for number in 0..ORDERS {
        let (id, place) = order(number);
        let payment = runners.payments.load(&id).await.unwrap();
        assert_eq!(payment.state.captured, place.total, "order {id} charged once");
        assert_eq!(payment.version.get(), 1, "order {id}: one payment event, no second charge");
    }
    let stock = runners.inventory.load("tea").await.unwrap().state;
    assert_eq!(stock.available, 100 - ORDERS as u32, "stock taken once per order");
}
