//! Sustained checkouts per second on PostgreSQL and Kafka: the orders placed by concurrent
//! clients, the outbox relay publishing the events, the saga reading them from a consumer group
//! (`saga::from_bus`) and dispatching to the runners in its process (the commands don't cross
//! the broker here). A checkout's latency runs from placing the order to its `order.confirmed`
//! event committing (three events through the relay and the broker). The in-memory checkout
//! (the saga polling the store's log) runs first, in the same process, as the baseline. Every
//! 50th order of a client goes to a newly stocked sku; the restock is outside the latency but
//! inside the throughput's wall time.
//!
//! Needs `DATABASE_URL` and `KAFKA_BROKERS`; `CHECKOUT_BENCH_SECS` sets how long each row runs
//! (10 s by default).
//!
//! The last rows run the same clients against the checkout through the application host
//! (`checkout_saga::hosted`): the saga reads the log (woken by `LISTEN/NOTIFY`) and its
//! commands cross the broker to the command service; a checkout is finished when its
//! `order.confirmed` event commits.
//!
//! `cargo bench -p checkout-saga --bench checkout_kafka`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checkout_saga::{
    Aggregates, Checkout, CheckoutSaga, Inventory, Order, PlaceOrder, Restock, hosted,
};
use composable::bus::topic_for;
use composable::checkpoint::InMemoryCheckpointStore;
use composable::consumer::{EventHandler, LogConsumer};
use composable::dispatch::LocalDispatcher;
use composable::relay::Relay;
use composable::saga::{self, InMemoryTimerStore, SagaStatus};
use composable::{AggregateRunner, RecordedEvent, SagaRunner, service};
use composable::{InMemoryEventStore, TestClock};
use composable_postgres::{
    PgConnectOptions, PostgresCheckpointStore, PostgresEventStore, PostgresTimerStore,
};
use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::oneshot;

const HOW_TO_START: &str = "run `scripts/bench`, or in this shell `source scripts/lib/common.sh \
    && source scripts/lib/postgres.sh && source scripts/lib/kafka.sh && pg_start && kafka_start`";

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>>;

struct Row {
    backend: &'static str,
    workers: usize,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

fn env(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| panic!("{name} is not set: {HOW_TO_START}"))
}

/// Orders per sku: each sku's stream stays short (the runners load whole streams), so the
/// figures don't drift with the length of the run.
const ORDERS_PER_SKU: usize = 50;

/// The sku of a client's `number`th order, and whether it needs stocking first.
fn sku(worker: usize, number: usize) -> (String, bool) {
    (format!("sku-{worker}-{}", number / ORDERS_PER_SKU), number.is_multiple_of(ORDERS_PER_SKU))
}

fn restock() -> Restock {
    Restock { quantity: 1_000, manual: false }
}

fn place(order_id: &str, sku: &str) -> PlaceOrder {
    PlaceOrder {
        order_id: order_id.into(),
        sku: sku.into(),
        quantity: 1,
        total: 900,
        card: "tok_visa".into(),
    }
}

async fn in_memory(duration: Duration) -> Row {
    let checkout =
        Checkout::new(InMemoryEventStore::new(), InMemoryTimerStore::new(), TestClock::new());
    let mut latencies = Vec::new();
    let start = Instant::now();
    while start.elapsed() < duration {
        let order_id = latencies.len().to_string();
        let (sku, restock_first) = sku(0, latencies.len());
        if restock_first {
            checkout.inventory.execute(&sku, restock()).await.expect("a command");
        }
        let placed = Instant::now();
        checkout.orders.execute(&order_id, place(&order_id, &sku)).await.expect("a command");
        let progress = checkout.saga.run_until_idle().await.expect("a command");
        assert_eq!(progress.last().map(|step| step.status), Some(SagaStatus::Completed));
        latencies.push(placed.elapsed());
    }
    Row { backend: "in memory", workers: 1, latencies, elapsed: start.elapsed() }
}

async fn fresh_database() -> PostgresEventStore {
    let url = env("DATABASE_URL");
    let admin_options: PgConnectOptions = url.parse().expect("a valid DATABASE_URL");
    let mut admin = PgConnection::connect_with(&admin_options)
        .await
        .unwrap_or_else(|error| panic!("cannot reach PostgreSQL: {error}; {HOW_TO_START}"));
    let name = format!("checkout_bench_{}", uuid::Uuid::now_v7().simple());
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    PostgresEventStore::builder()
        .connect_options(admin_options.database(&name))
        .max_connections(24)
        .connect()
        .await
        .expect("connect to the bench database")
}

/// `workers` clients each placing an order and waiting for the saga to complete it, for
/// `duration`, on a fresh database and fresh topics: the relay publishing, the saga reading its
/// input from a consumer group and dispatching in process.
async fn saga_from_the_bus(workers: usize, duration: Duration) -> Row {
    let store = fresh_database().await;
    store.migrate().await.expect("migrations");
    let prefix = format!("b{}.", uuid::Uuid::now_v7().simple());
    let bus = hosted::connect_bus(hosted::kafka_config(&env("KAFKA_BROKERS")), &prefix)
        .await
        .unwrap_or_else(|error| panic!("{error}; {HOW_TO_START}"));
    let categories = ["order", "payment", "inventory", "saga.checkout"];
    let topics: Vec<String> = categories.iter().map(|category| topic_for(category)).collect();
    hosted::create_topics(&bus, &topics).await.expect("topics");
    let runners = Aggregates::new(&store, &TestClock::new());
    let dispatcher = LocalDispatcher::new()
        .route(Arc::clone(&runners.orders))
        .route(Arc::clone(&runners.payments))
        .route(Arc::clone(&runners.inventory));
    let timers = PostgresTimerStore::new(store.pool().clone());
    let runner =
        Arc::new(SagaRunner::<CheckoutSaga, _, _, _>::new(store.clone(), dispatcher, timers));
    let checkpoints = PostgresCheckpointStore::new(store.pool().clone());
    let relay = service::spawn(Relay::new(store.clone(), bus.clone(), checkpoints));
    let input = service::spawn(saga::from_bus(&runner, bus.clone(), "checkout-saga", &topics[..3]));
    let waiters: Waiters = Arc::default();
    let confirmations = watch_confirmations(&store, &waiters);
    let (latencies, elapsed) =
        clients(&runners.orders, &runners.inventory, &waiters, workers, duration).await;
    confirmations.stop().await.expect("stop the watcher");
    input.stop().await.expect("stop the saga's input");
    relay.stop().await.expect("stop the relay");
    store.pool().close().await;
    Row { backend: "PostgreSQL + Kafka, saga from the bus", workers, latencies, elapsed }
}

/// A consumer of `store`'s log telling each waiter when its order is confirmed.
fn watch_confirmations(store: &PostgresEventStore, waiters: &Waiters) -> service::ServiceHandle {
    service::spawn(LogConsumer::new(
        "bench.confirmations",
        store.clone(),
        InMemoryCheckpointStore::new(),
        Confirmations(Arc::clone(waiters)),
    ))
}

/// Tells the waiter of each order when its `order.confirmed` event commits: how the bench sees
/// a checkout finish when the saga runs inside the host.
struct Confirmations(Waiters);

impl EventHandler for Confirmations {
    type Error = std::convert::Infallible;

    async fn handle(&mut self, events: &[RecordedEvent]) -> Result<(), Self::Error> {
        let now = Instant::now();
        for event in events.iter().filter(|event| event.name == "order.confirmed") {
            let order = event.stream_id.as_str().trim_start_matches("order-").to_owned();
            if let Some(waiter) = self.0.lock().expect("the waiters").remove(&order) {
                let _ = waiter.send(now);
            }
        }
        Ok(())
    }
}

/// `workers` clients as in [`saga_from_the_bus`], but everything runs through the application host:
/// the relay, the command service (the saga's commands cross the broker too) and the saga
/// reading the log, all in this process (the board, a projection, is not run).
async fn through_the_host(workers: usize, duration: Duration) -> Row {
    let store = fresh_database().await;
    hosted::migrate(&store).await.expect("migrations");
    let prefix = format!("h{}.", uuid::Uuid::now_v7().simple());
    let bus = hosted::connect_bus(hosted::kafka_config(&env("KAFKA_BROKERS")), &prefix)
        .await
        .unwrap_or_else(|error| panic!("{error}; {HOW_TO_START}"));
    let runners = Aggregates::new(&store, &TestClock::new());
    // The board (a projection) stays out, as it was before the host had it: these rows measure
    // the relay, the command service and the saga.
    let app = hosted::app(&store, &bus, &runners, TestClock::new())
        .roles(["relay", "commands", "checkout"])
        .build()
        .expect("the wiring");
    hosted::create_topics(&bus, app.topics()).await.expect("topics");
    let running = app.start();
    let waiters: Waiters = Arc::default();
    let confirmations = watch_confirmations(&store, &waiters);
    let (latencies, elapsed) =
        clients(&runners.orders, &runners.inventory, &waiters, workers, duration).await;
    confirmations.stop().await.expect("stop the watcher");
    running.stop().await.expect("stop the host");
    store.pool().close().await;
    Row { backend: "PostgreSQL + Kafka, through the host", workers, latencies, elapsed }
}

/// `workers` clients, each placing an order and waiting for its checkout, for `duration`,
/// after one warm-up checkout each (the consumer groups join, partitions get assigned): every
/// latency, and the time it all took.
async fn clients(
    orders: &Arc<AggregateRunner<Order, PostgresEventStore>>,
    inventory: &Arc<AggregateRunner<Inventory, PostgresEventStore>>,
    waiters: &Waiters,
    workers: usize,
    duration: Duration,
) -> (Vec<Duration>, Duration) {
    for worker in 0..workers {
        checkout_one(orders, inventory, waiters, worker + workers, 0).await;
    }
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (orders, inventory) = (Arc::clone(orders), Arc::clone(inventory));
            let waiters = Arc::clone(waiters);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while start.elapsed() < duration {
                    let number = latencies.len();
                    latencies
                        .push(checkout_one(&orders, &inventory, &waiters, worker, number).await);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("a worker"));
    }
    (latencies, start.elapsed())
}

/// Places one order through `orders` (restocking through `inventory` first when its sku
/// needs it) and waits for its checkout to finish: the time it took.
async fn checkout_one(
    orders: &AggregateRunner<Order, PostgresEventStore>,
    inventory: &AggregateRunner<Inventory, PostgresEventStore>,
    waiters: &Waiters,
    worker: usize,
    number: usize,
) -> Duration {
    let order_id = format!("{worker}-{number}");
    let (done, completed) = oneshot::channel();
    waiters.lock().expect("the waiters").insert(order_id.clone(), done);
    let (sku, restock_first) = sku(worker, number);
    if restock_first {
        inventory.execute(&sku, restock()).await.expect("a command");
    }
    let placed = Instant::now();
    orders.execute(&order_id, place(&order_id, &sku)).await.expect("a command");
    let completed = tokio::time::timeout(Duration::from_secs(60), completed)
        .await
        .unwrap_or_else(|_| panic!("checkout {order_id} not completed within 60 s"))
        .expect("the consumer stopped");
    completed - placed
}

fn print(rows: &mut [Row]) {
    println!("| backend | clients | checkouts | checkouts/s | p50 latency | p99 latency |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in rows {
        row.latencies.sort_unstable();
        let n = row.latencies.len();
        let at = |q: usize| row.latencies[(n * q / 100).min(n - 1)];
        #[allow(clippy::cast_precision_loss)]
        let rate = n as f64 / row.elapsed.as_secs_f64();
        println!(
            "| {} | {} | {n} | {rate:.0} | {:.2} ms | {:.2} ms |",
            row.backend,
            row.workers,
            at(50).as_secs_f64() * 1e3,
            at(99).as_secs_f64() * 1e3,
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any other run (`cargo test --benches`) only checks that it builds.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let seconds =
        std::env::var("CHECKOUT_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let duration = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut rows = runtime.block_on(async {
        vec![
            in_memory(duration).await,
            saga_from_the_bus(1, duration).await,
            saga_from_the_bus(16, duration).await,
            through_the_host(1, duration).await,
            through_the_host(16, duration).await,
        ]
    });
    println!(
        "checkouts for {seconds} s each; latency from placing the order to the saga completing it"
    );
    print(&mut rows);
}
