//! The checkout on PostgreSQL and Kafka, end to end: the outbox relay publishes the events table
//! to the broker, the saga reads its input from a consumer group, and its commands cross the
//! broker to a command service hosting the aggregates. Each test has its own database and its
//! own topics (a unique prefix), so tests sharing the broker don't meet.
//!
//! Needs `DATABASE_URL` and `KAFKA_BROKERS` (`scripts/test` starts a private PostgreSQL and a
//! tansu broker and sets both).

use std::time::Duration;

use checkout_saga::distributed::{self, Distributed};
use checkout_saga::{Aggregates, DECLINED_CARD, OrderStatus, PlaceOrder, Restock};
use composable::command::{derive_id, event_id};
use composable::saga::SagaStatus;
use composable::{EventStore, StreamId, TestClock, Version};
use composable_postgres::{PgConnectOptions, PostgresEventStore};
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

/// A fresh database and a unique topic prefix for one test.
struct Backends {
    name: String,
    distributed: Distributed,
}

impl Backends {
    async fn create() -> Self {
        let brokers = env("KAFKA_BROKERS");
        let mut admin = PgConnection::connect_with(&admin_options())
            .await
            .unwrap_or_else(|error| panic!("cannot reach PostgreSQL: {error}; {HOW_TO_START}"));
        let id = uuid::Uuid::now_v7().simple().to_string();
        let name = format!("checkout_kafka_{id}");
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create database");
        let store = PostgresEventStore::builder()
            .connect_options(admin_options().database(&name))
            .max_connections(4)
            .connect()
            .await
            .expect("connect to the test database");
        let distributed =
            Distributed::connect(store, distributed::kafka_config(&brokers), &format!("t{id}."))
                .await
                .unwrap_or_else(|error| {
                    panic!("set up PostgreSQL and Kafka at {brokers}: {error}; {HOW_TO_START}")
                });
        Self { name, distributed }
    }

    async fn drop(self) {
        self.distributed.store().pool().close().await;
        let mut admin = PgConnection::connect_with(&admin_options()).await.expect("reconnect");
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        admin.execute(sql.as_str()).await.expect("drop database");
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
    let backends = Backends::create().await;
    let clock = TestClock::new();
    let checkout = backends.distributed.checkout(clock.clone());
    let relay = backends.distributed.spawn_relay();
    // The aggregates' own runners, as another process would have them: the saga reaches them
    // only through the broker.
    let hosted = Aggregates::new(backends.distributed.store(), &clock);
    let commands = backends.distributed.spawn_command_service(&hosted);
    let mut input = backends.distributed.subscribe_saga("checkout-saga").await.expect("subscribe");

    checkout.inventory.execute("tea", Restock { quantity: 5, manual: false }).await.unwrap();
    checkout.orders.execute("1", place("1", "tok_visa")).await.unwrap();
    let progress = input.run_until_idle(&checkout.saga).await.expect("run the saga");

    let steps: Vec<_> = progress.iter().map(|step| step.step).collect();
    assert_eq!(steps, ["order_placed", "payment_captured", "stock_reserved"]);
    assert_eq!(checkout.orders.load("1").await.unwrap().state.status, OrderStatus::Confirmed);
    assert_eq!(checkout.payments.load("1").await.unwrap().state.captured, 900);
    assert_eq!(checkout.inventory.load("tea").await.unwrap().state.available, 3);
    let summary = checkout.saga.load("1").await.unwrap().expect("started");
    assert_eq!(summary.status, SagaStatus::Completed);
    // The charge crossed the broker with a command id derived from the event that caused it,
    // and the payment's event id is derived from that: a re-sent charge would be a duplicate.
    let placed = first_event(&backends, "order-1").await;
    let captured = first_event(&backends, "payment-1").await;
    assert_eq!(captured.metadata.causation_id, Some(placed.event_id));
    assert_eq!(captured.event_id, event_id(derive_id(placed.event_id, "step/0"), 0));

    commands.stop().await.expect("stop the command service");
    relay.stop().await.expect("stop the relay");
    backends.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_cancels_the_order_through_kafka() {
    let backends = Backends::create().await;
    let clock = TestClock::new();
    let checkout = backends.distributed.checkout(clock.clone());
    let relay = backends.distributed.spawn_relay();
    let commands = backends.distributed.spawn_command_service(&checkout.aggregates());
    let mut input = backends.distributed.subscribe_saga("checkout-saga").await.expect("subscribe");

    checkout.inventory.execute("tea", Restock { quantity: 5, manual: false }).await.unwrap();
    checkout.orders.execute("1", place("1", DECLINED_CARD)).await.unwrap();
    let progress = input.run_until_idle(&checkout.saga).await.expect("run the saga");

    assert_eq!(progress.len(), 1);
    assert!(progress[0].failure.as_deref().is_some_and(|reason| reason.contains("declined")));
    assert_eq!(progress[0].status, SagaStatus::Compensated);
    assert_eq!(checkout.orders.load("1").await.unwrap().state.status, OrderStatus::Cancelled);
    assert_eq!(checkout.payments.load("1").await.unwrap().state.captured, 0);
    assert_eq!(checkout.inventory.load("tea").await.unwrap().state.available, 5);

    commands.stop().await.expect("stop the command service");
    relay.stop().await.expect("stop the relay");
    backends.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_warehouse_times_out_and_is_compensated_through_kafka() {
    let backends = Backends::create().await;
    let clock = TestClock::new();
    let checkout = backends.distributed.checkout(clock.clone());
    let relay = backends.distributed.spawn_relay();
    let commands = backends.distributed.spawn_command_service(&checkout.aggregates());
    let mut input = backends.distributed.subscribe_saga("checkout-saga").await.expect("subscribe");

    checkout.inventory.execute("tea", Restock { quantity: 5, manual: true }).await.unwrap();
    checkout.orders.execute("1", place("1", "tok_visa")).await.unwrap();
    let progress = input.run_until_idle(&checkout.saga).await.expect("run the saga");
    assert_eq!(progress.last().map(|step| step.status), Some(SagaStatus::Running));

    clock.advance(Duration::from_secs(30)).await;
    let progress = input.run_until_idle(&checkout.saga).await.expect("fire the timeout");
    assert_eq!(progress.iter().filter(|step| step.timed_out).count(), 1);
    assert_eq!(checkout.orders.load("1").await.unwrap().state.status, OrderStatus::Cancelled);
    assert_eq!(checkout.payments.load("1").await.unwrap().state.captured, 0);
    assert_eq!(checkout.inventory.load("tea").await.unwrap().state.available, 5);

    // The compensations' events came back through the broker too, and changed nothing.
    assert!(input.run_until_idle(&checkout.saga).await.expect("run again").is_empty());
    // The payment's own stream, not the global log: the gap-safe log may still hold back
    // commits while another test's transaction runs on the same server.
    let payment = StreamId::new("payment", "1").unwrap();
    let refunds = backends
        .distributed
        .store()
        .read_stream(&payment, Version::ZERO)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .filter(|event| event.name == "payment.refunded")
        .count();
    assert_eq!(refunds, 1);

    commands.stop().await.expect("stop the command service");
    relay.stop().await.expect("stop the relay");
    backends.drop().await;
}

async fn first_event(backends: &Backends, stream: &str) -> composable::RecordedEvent {
    let stream = StreamId::parse(stream).expect("a stream id");
    let events: Vec<_> = backends
        .distributed
        .store()
        .read_stream(&stream, Version::ZERO)
        .try_collect()
        .await
        .expect("read the stream");
    events.into_iter().next().expect("an event")
}
