//! The checkout on PostgreSQL and Kafka through the application host, end to end: the outbox
//! relay publishes the events table to the broker, the saga reads the log, and its commands
//! cross the broker to the command service hosting the aggregates. Each test has its own
//! database and its own topics (a unique prefix), so tests sharing the broker don't meet. The
//! application's time is a test clock: the saga's timeout fires when the test moves it (the
//! services' waits on I/O stay on real time).
//!
//! Needs `DATABASE_URL` and `KAFKA_BROKERS` (`scripts/test` starts a private PostgreSQL and a
//! tansu broker and sets both).

use std::time::Duration;

use checkout_saga::{Checkout, DECLINED_CARD, OrderStatus, PlaceOrder, Restock, hosted};
use composable::command::{derive_id, event_id};
use composable::host::RunningApp;
use composable::saga::SagaStatus;
use composable::{EventStore, StreamId, TestClock, Version};
use composable_postgres::{PgConnectOptions, PostgresEventStore, PostgresTimerStore};
use futures::TryStreamExt;
use sqlx::{Connection, Executor, PgConnection};

const HOW_TO_START: &str = "run `scripts/test` (it starts a private PostgreSQL and a tansu \
    broker), or in this shell `source scripts/lib/common.sh && source scripts/lib/postgres.sh && \
    source scripts/lib/kafka.sh && pg_start && kafka_start`, which export DATABASE_URL and \
    KAFKA_BROKERS";

fn env(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| panic!("{name} is not set: {HOW_TO_START}"))
}

fn admin_options() -> PgConnectOptions {
    let url = env("DATABASE_URL");
    url.parse().unwrap_or_else(|error| panic!("DATABASE_URL `{url}` is not valid: {error}"))
}

/// A fresh database and a unique topic prefix for one test, the checkout's host running on
/// them. `checkout` holds the runners the host serves commands with, and a saga runner that
/// only reads the saga's state.
struct Backends {
    name: String,
    store: PostgresEventStore,
    clock: TestClock,
    checkout: Checkout<PostgresEventStore, PostgresTimerStore>,
    running: RunningApp<PostgresEventStore>,
}

impl Backends {
    async fn start() -> Self {
        let brokers = env("KAFKA_BROKERS");
        let id = uuid::Uuid::now_v7().simple().to_string();
        // The broker first: a broker that is not there leaves no database behind.
        let bus = hosted::connect_bus(hosted::kafka_config(&brokers), &format!("t{id}."))
            .await
            .unwrap_or_else(|error| panic!("{error}; {HOW_TO_START}"));
        let mut admin = PgConnection::connect_with(&admin_options())
            .await
            .unwrap_or_else(|error| panic!("cannot reach PostgreSQL: {error}; {HOW_TO_START}"));
        let name = format!("checkout_kafka_{id}");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create database");
        let store = PostgresEventStore::builder()
            .connect_options(admin_options().database(&name))
            .max_connections(8)
            .connect()
            .await
            .expect("connect to the test database");
        hosted::migrate(&store).await.expect("migrations");
        let clock = TestClock::new();
        let timers = PostgresTimerStore::new(store.pool().clone());
        let checkout = Checkout::new(store.clone(), timers, clock.clone());
        let runners = checkout.aggregates();
        let app = hosted::app(&store, &bus, &runners, clock.clone()).build().expect("the wiring");
        hosted::create_topics(&bus, app.topics()).await.expect("create the topics");
        let running = app.start();
        Self { name, store, clock, checkout, running }
    }

    /// Waits (up to 60 s of real time) for the host to settle.
    async fn settle(&self) {
        tokio::time::timeout(Duration::from_secs(60), self.running.settle())
            .await
            .unwrap_or_else(|_| {
                panic!("the host did not settle within 60 s: {:?}", self.running.health())
            })
            .expect("the host settles");
    }

    async fn status(&self) -> Option<SagaStatus> {
        self.checkout.saga.load("1").await.expect("load the saga").map(|summary| summary.status)
    }

    async fn stop(self) {
        self.running.stop().await.expect("a clean stop");
        self.store.pool().close().await;
        let mut admin = PgConnection::connect_with(&admin_options()).await.expect("reconnect");
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        admin.execute(sqlx::AssertSqlSafe(sql)).await.expect("drop database");
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_happy_path_through_kafka() {
    let backends = Backends::start().await;
    let checkout = &backends.checkout;
    checkout.inventory.execute("tea", Restock { quantity: 5, manual: false }).await.unwrap();
    checkout.orders.execute("1", place("1", "tok_visa")).await.unwrap();
    backends.settle().await;

    let summary = checkout.saga.load("1").await.unwrap().expect("started");
    assert_eq!(summary.completed, ["order_placed", "payment_captured", "stock_reserved"]);
    assert_eq!(summary.status, SagaStatus::Completed);
    assert_eq!(checkout.orders.load("1").await.unwrap().state.status, OrderStatus::Confirmed);
    assert_eq!(checkout.payments.load("1").await.unwrap().state.captured, 900);
    assert_eq!(checkout.inventory.load("tea").await.unwrap().state.available, 3);
    // The charge crossed the broker with a command id derived from the event that caused it,
    // and the payment's event id is derived from that: a re-sent charge would be a duplicate.
    let placed = first_event(&backends, "order-1").await;
    let captured = first_event(&backends, "payment-1").await;
    assert_eq!(captured.metadata.causation_id, Some(placed.event_id));
    assert_eq!(captured.event_id, event_id(derive_id(placed.event_id, "step/0"), 0));
    assert!(backends.running.is_healthy(), "{:?}", backends.running.health());
    backends.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_cancels_the_order_through_kafka() {
    let backends = Backends::start().await;
    let checkout = &backends.checkout;
    checkout.inventory.execute("tea", Restock { quantity: 5, manual: false }).await.unwrap();
    checkout.orders.execute("1", place("1", DECLINED_CARD)).await.unwrap();
    backends.settle().await;

    let summary = checkout.saga.load("1").await.unwrap().expect("started");
    assert_eq!(summary.completed, ["order_placed"]);
    assert_eq!(summary.status, SagaStatus::Compensated);
    // The saga recorded why it failed: the payment's refusal, as the command service answered.
    let records = read(&backends, "saga.checkout-1").await;
    let failed: Vec<_> = records.iter().filter(|event| event.name == "saga.failed").collect();
    assert_eq!(failed.len(), 1);
    assert!(
        String::from_utf8_lossy(&failed[0].payload).contains("declined"),
        "the recorded reason names the refusal"
    );
    assert_eq!(checkout.orders.load("1").await.unwrap().state.status, OrderStatus::Cancelled);
    assert_eq!(checkout.payments.load("1").await.unwrap().state.captured, 0);
    assert_eq!(checkout.inventory.load("tea").await.unwrap().state.available, 5);
    backends.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_warehouse_times_out_and_is_compensated_through_kafka() {
    let backends = Backends::start().await;
    let checkout = &backends.checkout;
    checkout.inventory.execute("tea", Restock { quantity: 5, manual: true }).await.unwrap();
    checkout.orders.execute("1", place("1", "tok_visa")).await.unwrap();
    backends.settle().await;
    assert_eq!(backends.status().await, Some(SagaStatus::Running));

    backends.clock.advance(Duration::from_secs(29)).await;
    backends.settle().await;
    assert_eq!(backends.status().await, Some(SagaStatus::Running), "not due yet");
    backends.clock.advance(Duration::from_secs(1)).await;
    // The host's timer service fires it; then its commands cross the broker.
    let fired = tokio::time::timeout(Duration::from_secs(30), async {
        while backends.status().await == Some(SagaStatus::Running) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(fired.is_ok(), "the timeout did not fire within 30 s");
    backends.settle().await;
    assert_eq!(backends.status().await, Some(SagaStatus::Compensated));
    assert_eq!(checkout.orders.load("1").await.unwrap().state.status, OrderStatus::Cancelled);
    assert_eq!(checkout.payments.load("1").await.unwrap().state.captured, 0);
    assert_eq!(checkout.inventory.load("tea").await.unwrap().state.available, 5);
    let payment = StreamId::new("payment", "1").unwrap();
    let refunds = backends
        .store
        .read_stream(&payment, Version::ZERO)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .filter(|event| event.name == "payment.refunded")
        .count();
    assert_eq!(refunds, 1);
    backends.stop().await;
}

async fn first_event(backends: &Backends, stream: &str) -> composable::RecordedEvent {
    read(backends, stream).await.into_iter().next().expect("an event")
}

async fn read(backends: &Backends, stream: &str) -> Vec<composable::RecordedEvent> {
    let stream = StreamId::parse(stream).expect("a stream id");
    backends.store.read_stream(&stream, Version::ZERO).try_collect().await.expect("read the stream")
}
