//! The checkout's services as real processes on PostgreSQL and Kafka: `checkout-service` runs
//! the relay and the command service in one process and the saga in two more, one holding the
//! claim on the saga's input and the other standing by. In the middle of a run of checkouts the
//! saga's active process is killed with SIGKILL while checkouts are in flight — the standby
//! takes over — and later the relay's and command service's process too; each is started again. Every checkout
//! then completes or compensates, no event is written twice, no card is charged twice and stock
//! is taken once per confirmed order. The restarted process serves its metrics for Prometheus.
//! Every process stops cleanly on SIGTERM.
//!
//! A second run stops processes gracefully instead: each serves its probes
//! (`CHECKOUT_HEALTH_ADDR`) and is waited for until `/health/ready` answers 200; the saga's
//! process, then the relay's and command service's, is sent SIGTERM while checkouts are in
//! flight, exits 0 within seconds having released its claims, and is started again. Every
//! checkout then completes or compensates, once.
//!
//! Needs `DATABASE_URL` and `KAFKA_BROKERS` (`scripts/test` starts a private PostgreSQL and a
//! tansu broker and sets both).

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use checkout_saga::{Aggregates, DECLINED_CARD, OrderStatus, PlaceOrder, Restock};
use composable::{EventStore, Position, StreamId, SystemClock, Version};
use composable_postgres::PostgresEventStore;
use futures::TryStreamExt;
use support::{Database, Process, free_address, get_ok, scrape};

const ORDERS: usize = 24;

/// Waits until a process other than `not` holds the claim on consumer `name`'s work: who.
async fn wait_for_claim(
    store: &PostgresEventStore,
    name: &str,
    not: Option<uuid::Uuid>,
) -> uuid::Uuid {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held: Option<(uuid::Uuid,)> =
            sqlx::query_as("SELECT holder FROM checkpoint_claims WHERE name = $1")
                .bind(name)
                .fetch_optional(store.pool())
                .await
                .expect("read the claims");
        if let Some((holder,)) = held
            && Some(holder) != not
        {
            return holder;
        }
        assert!(Instant::now() < deadline, "no other process claimed `{name}` within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many of `orders` (placed ones) are no longer placed.
async fn finished(runners: &Aggregates<PostgresEventStore>, orders: Range<usize>) -> usize {
    let mut finished = 0;
    for order in orders {
        let status = runners.orders.load(place(order).0).await.expect("load").state.status;
        finished += usize::from(status != OrderStatus::Placed);
    }
    finished
}

/// Waits until the card of one of the first orders (not the first: the saga handles the inputs
/// of all of them in turn) has been charged.
async fn wait_for_a_charge(runners: &Aggregates<PostgresEventStore>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        for order in 0..ORDERS / 2 {
            if runners.payments.load(place(order).0).await.expect("load").state.charged {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no card charged within {within:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn place(order: usize) -> (String, PlaceOrder) {
    let id = format!("o{order}");
    let card = if order % 5 == 4 { DECLINED_CARD } else { "tok_visa" };
    let place = PlaceOrder {
        order_id: id.clone(),
        sku: format!("tea-{}", order % 3),
        quantity: 1,
        total: 500 + order as u64,
        card: card.into(),
    };
    (id, place)
}

/// Stocks every SKU and places the first half of the orders at once.
async fn stock_and_place_the_first_half(runners: &Aggregates<PostgresEventStore>) {
    for sku in 0..3 {
        runners
            .inventory
            .execute(format!("tea-{sku}"), Restock { quantity: 1_000, manual: false })
            .await
            .expect("restock");
    }
    for order in 0..ORDERS / 2 {
        let (id, place) = place(order);
        runners.orders.execute(&id, place).await.expect("place an order");
    }
}

/// Waits until every checkout has finished, completed or compensated.
async fn wait_until_finished(runners: &Aggregates<PostgresEventStore>, within: Duration) {
    let deadline = Instant::now() + within;
    for order in 0..ORDERS {
        let (id, _) = place(order);
        loop {
            let status = runners.orders.load(&id).await.expect("load an order").state.status;
            if status != OrderStatus::Placed {
                break;
            }
            assert!(Instant::now() < deadline, "order {id} still placed after {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every checkout completed or compensated as its card says, no card charged twice, no event
/// written twice, and stock taken once per confirmed order.
async fn audit(store: &PostgresEventStore, runners: &Aggregates<PostgresEventStore>) {
    for order in 0..ORDERS {
        let (id, place) = place(order);
        let status = runners.orders.load(&id).await.expect("load an order").state.status;
        let payment = runners.payments.load(&id).await.expect("load a payment").state;
        if place.card == DECLINED_CARD {
            assert_eq!((status, payment.charged), (OrderStatus::Cancelled, false), "order {id}");
        } else {
            assert_eq!(
                (status, payment.captured),
                (OrderStatus::Confirmed, place.total),
                "order {id}"
            );
        }
        let stream = StreamId::new("payment", &id).expect("a stream id");
        let captures = store
            .read_stream(&stream, Version::ZERO)
            .try_collect::<Vec<_>>()
            .await
            .expect("read a payment")
            .iter()
            .filter(|event| event.name == "payment.captured")
            .count();
        assert!(captures <= 1, "order {id}'s card was charged {captures} times");
    }
    let log = composable::testing::read_all_to_head(store, Position::START).await;
    let mut ids = HashSet::new();
    assert!(log.iter().all(|event| ids.insert(event.event_id)), "an event was written twice");
    let reserved: u32 = {
        let mut total = 0;
        for sku in 0..3 {
            let stock =
                runners.inventory.load(format!("tea-{sku}")).await.expect("load stock").state;
            total += 1_000 - stock.available;
        }
        total
    };
    let confirmed = (0..ORDERS).filter(|order| place(*order).1.card != DECLINED_CARD).count();
    assert_eq!(
        usize::try_from(reserved).expect("a count"),
        confirmed,
        "stock taken once per confirmed order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_survive_a_killed_saga_process_with_nothing_lost_or_doubled() {
    let database = Database::create("checkout_services").await;
    let (store, database_url, prefix) =
        (database.store.clone(), database.url.clone(), database.prefix.clone());

    let metrics = free_address();
    let mut aggregates = Process::start(&database_url, &prefix, "relay,commands");
    let saga = Process::start(&database_url, &prefix, "checkout");
    // A second saga process stands by once the first holds the claim on the saga's input.
    let active = wait_for_claim(&store, "saga.checkout", None).await;
    let standby = Process::start(&database_url, &prefix, "checkout");

    // The test is the front end: it places orders through its own runners on the database.
    let runners = Aggregates::new(&store, &SystemClock);
    // Half the orders at once, then the saga's process dies as soon as it has charged a card:
    // the checkouts are in flight, their deliveries unacknowledged and commands sent.
    stock_and_place_the_first_half(&runners).await;
    wait_for_a_charge(&runners, Duration::from_secs(60)).await;
    saga.kill();
    let finished = finished(&runners, 0..ORDERS / 2).await;
    assert!(
        finished < ORDERS / 2,
        "the saga was killed with checkouts in flight ({finished} done)"
    );
    // The standby takes over once the killed process's claim lapses, alone; a new process then
    // stands by in turn.
    wait_for_claim(&store, "saga.checkout", Some(active)).await;
    let saga = Process::start(&database_url, &prefix, "checkout");

    // The rest at a steady pace; three quarters in, the relay's and the command service's
    // process dies too.
    for order in ORDERS / 2..ORDERS {
        if order == ORDERS * 3 / 4 {
            aggregates.kill();
            aggregates =
                Process::serving_metrics(&database_url, &prefix, "relay,commands", Some(metrics));
        }
        let (id, place) = place(order);
        runners.orders.execute(&id, place).await.expect("place an order");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    wait_until_finished(&runners, Duration::from_secs(120)).await;
    audit(&store, &runners).await;

    // The restarted process serves its metrics for Prometheus: the commands it ran and the
    // relay's progress.
    let scraped = scrape(metrics);
    for line in [
        "composable_commands_total{aggregate=\"payment\",outcome=\"accepted\"}",
        "composable_consumer_events_total{consumer=\"checkout.relay\"}",
        "composable_consumer_lag_seconds{consumer=\"checkout.relay\"}",
        "# TYPE composable_command_duration_seconds histogram",
    ] {
        assert!(scraped.contains(line), "no `{line}` in the metrics:\n{scraped}");
    }

    // Graceful shutdown: every process stops on SIGTERM, finishing what it holds.
    saga.terminate();
    standby.terminate();
    aggregates.terminate();
    database.drop().await;
}

/// How long a process may take to exit on SIGTERM, idle or with checkouts in flight.
const PROMPTLY: Duration = Duration::from_secs(10);

/// Who holds the claim on consumer `name`'s work now, if anyone.
async fn claim_holder(store: &PostgresEventStore, name: &str) -> Option<uuid::Uuid> {
    sqlx::query_as::<_, (uuid::Uuid,)>("SELECT holder FROM checkpoint_claims WHERE name = $1")
        .bind(name)
        .fetch_optional(store.pool())
        .await
        .expect("read the claims")
        .map(|(holder,)| holder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_stops_each_process_promptly_and_loses_nothing() {
    let database = Database::create("checkout_services").await;
    let (store, url, prefix) = (&database.store, database.url.as_str(), database.prefix.as_str());
    let health = |address: SocketAddr| [("CHECKOUT_HEALTH_ADDR", address.to_string())];
    let (aggregates_probe, saga_probe) = (free_address(), free_address());
    let aggregates = Process::with_env(url, prefix, "relay,commands", &health(aggregates_probe));
    let saga = Process::with_env(url, prefix, "checkout", &health(saga_probe));

    // Each process says when it is ready, and lists its services.
    let ready = get_ok(aggregates_probe, "/health/ready", Duration::from_secs(60));
    assert!(ready.contains("\r\n\r\nready\n"), "{ready}");
    assert!(ready.contains("checkout.relay (relay): "), "{ready}");
    assert!(ready.contains("(commands): ready"), "{ready}");
    let ready = get_ok(saga_probe, "/health/ready", Duration::from_secs(60));
    assert!(ready.contains("saga.checkout (checkout): "), "{ready}");
    assert!(ready.contains("saga.checkout.timers (checkout): ready"), "{ready}");
    let live = get_ok(saga_probe, "/health/live", Duration::from_secs(5));
    assert!(live.ends_with("\r\n\r\nlive\n"), "{live}");

    let runners = Aggregates::new(store, &SystemClock);
    // Half the orders at once; as soon as a card is charged, the saga's process is told to
    // stop: it finishes the batch in hand, saves its checkpoint after it, releases its claim
    // and exits 0.
    stock_and_place_the_first_half(&runners).await;
    wait_for_a_charge(&runners, Duration::from_secs(60)).await;
    let took = saga.terminate();
    assert!(took < PROMPTLY, "the saga's process took {took:?} to stop");
    assert_eq!(claim_holder(store, "saga.checkout").await, None, "its claim was released");
    let in_flight = ORDERS / 2 - finished(&runners, 0..ORDERS / 2).await;
    // A new saga process takes the work over at once (no claim to wait out) from the checkpoint
    // the stopped one saved.
    let saga = Process::with_env(url, prefix, "checkout", &health(saga_probe));
    get_ok(saga_probe, "/health/ready", Duration::from_secs(60));

    // The rest at a steady pace; halfway through, the relay's and command service's process is
    // told to stop with commands and events in flight, and started again.
    let mut aggregates = Some(aggregates);
    for order in ORDERS / 2..ORDERS {
        if order == ORDERS * 3 / 4
            && let Some(process) = aggregates.take()
        {
            let took = process.terminate();
            assert!(took < PROMPTLY, "the relay's process took {took:?} to stop");
            assert_eq!(claim_holder(store, "checkout.relay").await, None, "released");
            aggregates =
                Some(Process::with_env(url, prefix, "relay,commands", &health(aggregates_probe)));
        }
        let (id, place) = place(order);
        runners.orders.execute(&id, place).await.expect("place an order");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    wait_until_finished(&runners, Duration::from_secs(120)).await;
    audit(store, &runners).await;
    eprintln!("{in_flight} checkouts were in flight when the saga's process was told to stop");

    // Idle, both stop promptly and cleanly; nothing holds a claim afterwards.
    let took = saga.terminate();
    assert!(took < PROMPTLY, "the saga's process took {took:?} to stop");
    if let Some(process) = aggregates {
        let took = process.terminate();
        assert!(took < PROMPTLY, "the relay's process took {took:?} to stop");
    }
    let claims: Vec<(String,)> = sqlx::query_as("SELECT name FROM checkpoint_claims")
        .fetch_all(store.pool())
        .await
        .expect("read the claims");
    assert_eq!(claims, [], "every claim released");
    database.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_starting_stops_the_process_cleanly() {
    let database = Database::create("checkout_starting").await;
    // A broker nobody answers at: the process stays in its start-up, trying to reach it for 10 s.
    let mut starting = std::process::Command::new(env!("CARGO_BIN_EXE_checkout-service"))
        .args(["--role", "relay,commands"])
        .env("DATABASE_URL", &database.url)
        .env("KAFKA_BROKERS", free_address().to_string())
        .env("CHECKOUT_TOPIC_PREFIX", &database.prefix)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start checkout-service");
    std::thread::sleep(Duration::from_millis(500));
    let pid = starting.id().to_string();
    let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    assert!(sent.is_ok_and(|status| status.success()), "kill -TERM {pid}");
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = starting.try_wait().expect("wait for the process") {
            break status;
        }
        assert!(signalled.elapsed() < PROMPTLY, "it did not stop on SIGTERM while starting");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "SIGTERM while starting ended it with {status}");
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(3), "it took {took:?} to stop while starting");
    database.drop().await;
}
